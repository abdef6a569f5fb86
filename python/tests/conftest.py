"""Fixtures: a file:// bucket, and a fresh bucket per test on the real MinIO that
``make test`` starts (scripts/minio.sh run exports WALSYNC_TEST_S3_ENDPOINT,
WALSYNC_TEST_S3_ACCESS_KEY, WALSYNC_TEST_S3_SECRET_KEY).

Buckets are made, and objects read and rewritten (to corrupt one), by a small
AWS Signature V4 client on the standard library below: no boto3 to install,
and nothing of walsync's own S3 code is used to check walsync.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import walsync

REGION = "us-east-1"


def pytest_report_header(config: pytest.Config) -> str:
    info = walsync.build_info()
    s3 = os.environ.get("WALSYNC_TEST_S3_ENDPOINT") or "not set (S3 tests skipped)"
    return (
        f"walsync {info['version']} from {info['library']}: SQLite {info['sqlite_version']} "
        f"({info['sqlite']}, shared with Python's: {info['sqlite_shared']}); S3: {s3}"
    )


# --- a minimal S3 client (SigV4) for the tests ---------------------------------


@dataclass
class S3:
    endpoint: str
    access_key: str
    secret_key: str

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None
    ) -> Tuple[int, Dict[str, str], bytes]:
        url = self.endpoint.rstrip("/") + urllib.parse.quote(path, safe="/-_.~")
        u = urllib.parse.urlsplit(url)
        now = datetime.now(timezone.utc)
        amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        h = {k.lower(): v for k, v in (headers or {}).items()}
        h.update({"host": u.netloc, "x-amz-date": amzdate, "x-amz-content-sha256": payload})
        signed = sorted(h)
        canonical = "\n".join(
            [method, u.path or "/", "", "".join(f"{k}:{h[k].strip()}\n" for k in signed), ";".join(signed), payload]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret_key).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
        )
        del h["host"]
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def create_bucket(self, name: str) -> None:
        status, _, body = self.request("PUT", f"/{name}")
        assert status == 200, f"create bucket {name}: HTTP {status}: {body[:300]!r}"

    def get(self, bucket: str, key: str) -> Tuple[bytes, Dict[str, str]]:
        status, headers, body = self.request("GET", f"/{bucket}/{key}")
        assert status == 200, f"get {bucket}/{key}: HTTP {status}: {body[:300]!r}"
        return body, headers

    def replace(self, bucket: str, key: str, body: bytes, metadata: Dict[str, str]) -> None:
        """Overwrite an object, with the given x-amz-meta-* metadata."""
        status, _, resp = self.request(
            "PUT", f"/{bucket}/{key}", body, {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        )
        assert status == 200, f"put {bucket}/{key}: HTTP {status}: {resp[:300]!r}"


@pytest.fixture(scope="session")
def s3() -> S3:
    endpoint = os.environ.get("WALSYNC_TEST_S3_ENDPOINT")
    if not endpoint:
        if os.environ.get("WALSYNC_TEST_REQUIRE_S3"):
            pytest.fail("WALSYNC_TEST_S3_ENDPOINT is not set: run under scripts/minio.sh run")
        pytest.skip("no S3 server: run under scripts/minio.sh run (make pytest does)")
    return S3(endpoint, os.environ["WALSYNC_TEST_S3_ACCESS_KEY"], os.environ["WALSYNC_TEST_S3_SECRET_KEY"])


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment with no AWS settings of the machine's: no profile, no
    variables. Tests that talk to MinIO set credentials on top."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(s3: S3, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on MinIO, with its credentials in os.environ (set after
    walsync was imported: the library must see them anyway)."""
    name = "walsync-py-" + secrets.token_hex(6)
    s3.create_bucket(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_REGION", REGION)
    yield name


@dataclass
class Target:
    """Where a test replicates to, and how to reach the stored bytes."""

    ws: walsync.WalSync
    kind: str  # "file" or "s3"
    root: Optional[Path] = None  # file: the backup directory
    s3: Optional[S3] = None
    bucket: str = ""
    prefix: str = ""

    def read(self, key: str) -> Tuple[bytes, str]:
        """The stored bytes of key and their recorded sha256."""
        if self.kind == "file":
            assert self.root is not None
            p = self.root / key
            return p.read_bytes(), (p.parent / (p.name + ".sha256")).read_text().split()[0]
        assert self.s3 is not None
        body, headers = self.s3.get(self.bucket, self.prefix + key)
        return body, headers.get("x-amz-meta-sha256", "")

    def overwrite_keeping_sha256(self, key: str, body: bytes) -> None:
        """Replace the stored bytes of key; the recorded sha256 stays the old one."""
        if self.kind == "file":
            assert self.root is not None
            (self.root / key).write_bytes(body)
            return
        assert self.s3 is not None
        _, old = self.read(key)
        self.s3.replace(self.bucket, self.prefix + key, body, {"sha256": old})


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Each test that takes it runs against a file:// bucket and against MinIO."""
    if request.param == "file":
        root = tmp_path / "backups"
        root.mkdir()
        return Target(walsync.WalSync(f"file://{root}"), "file", root=root)
    s3: S3 = request.getfixturevalue("s3")
    bucket: str = request.getfixturevalue("s3_bucket")
    ws = walsync.WalSync(f"s3://{bucket}/py", endpoint=s3.endpoint)
    return Target(ws, "s3", s3=s3, bucket=bucket, prefix="py/")


def _make_db(path: Path, rows: int = 200) -> sqlite3.Connection:
    """A database in WAL mode with some rows, left open (its WAL not checkpointed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(os.urandom(48).hex(),) for _ in range(rows)])
    conn.execute("COMMIT")
    return conn


@pytest.fixture
def make_db() -> Iterator[Callable[..., sqlite3.Connection]]:
    """make_db(path, rows=200): a WAL database with rows, closed after the test."""
    conns: List[sqlite3.Connection] = []

    def make(path: Path, rows: int = 200) -> sqlite3.Connection:
        conn = _make_db(path, rows)
        conns.append(conn)
        return conn

    yield make
    for c in conns:
        c.close()
