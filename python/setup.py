"""Build of the walsync Python package: the Go library, then the Python files.

`pip install ./python` (from the repository) and `pip install walsync` (from an
sdist) both come here. The only native code is the Go library of
cmd/libwalsync, built with

    go build -buildmode=c-shared -o walsync/_libwalsync.so ./cmd/libwalsync

from the Go module's root, found in this order:

1. the parent directory, when it is the walsync module (a repository checkout);
2. ``_go/`` beside this file: the copy an sdist carries (``setup.py sdist``
   makes it from the repository and removes it afterwards).

Environment:

WALSYNC_GO
    the go command (default: ``go`` on PATH). Go >= 1.26 (go.mod); an older go
    fetches the right toolchain itself (GOTOOLCHAIN=auto).
WALSYNC_SQLITE
    ``auto`` (default), ``system`` or ``bundled``. ``system`` links the
    libsqlite3 shared library that Python's own sqlite3 module uses, so that the
    process has a single SQLite whose locks see both Python's connections and
    walsync's (see README.md, "One SQLite per process"); ``bundled`` compiles
    SQLite into the library. ``auto`` chooses ``system`` when Python's sqlite3
    module links a shared libsqlite3 and the build against it succeeds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.dist import Distribution

try:  # setuptools >= 70.1
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - older setuptools
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
MODULE = "github.com/walsync/walsync"
VENDORED = HERE / "_go"


def library_name() -> str:
    if sys.platform == "darwin":
        return "_libwalsync.dylib"
    if sys.platform == "win32":
        return "_libwalsync.dll"
    return "_libwalsync.so"


def log(msg: str) -> None:
    print(f"walsync build: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> NoReturn:
    raise SystemExit(f"walsync build: error: {msg}")


def is_walsync_module(d: Path) -> bool:
    gomod = d / "go.mod"
    if not gomod.is_file():
        return False
    first = gomod.read_text(encoding="utf-8").splitlines()[:5]
    return any(line.strip() == f"module {MODULE}" for line in first)


def go_root() -> Path:
    # A checkout first: a _go/ left behind by an interrupted sdist must not
    # shadow the sources beside it.
    if is_walsync_module(HERE.parent):
        return HERE.parent
    if is_walsync_module(VENDORED):
        return VENDORED
    fail(
        f"the Go sources of walsync are not here: neither {VENDORED} nor {HERE.parent} "
        "holds its go.mod. Build from a checkout of the repository (pip install ./python) "
        "or from an sdist made by `python -m build --sdist python`."
    )


def go_command() -> str:
    go = os.environ.get("WALSYNC_GO") or shutil.which("go")
    if not go:
        fail(
            "the go command is not on PATH: walsync's Python package compiles its "
            "library with Go 1.26 or newer (https://go.dev/dl/), then retry; "
            "WALSYNC_GO=/path/to/go names another one"
        )
    return go


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "1"
    env["GOWORK"] = "off"  # a go.work around an unpacked sdist plays no part
    env.setdefault("GOFLAGS", "")
    env["GOFLAGS"] = (env["GOFLAGS"] + " -mod=readonly").strip()
    return env


def python_libsqlite3() -> str | None:
    """The shared libsqlite3 Python's sqlite3 module is linked with, if any."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import sqlite3  # noqa: F401  (maps _sqlite3 and its libsqlite3)

        with open("/proc/self/maps", encoding="utf-8") as f:
            for line in f:
                path = line.split(None, 5)[-1].strip()
                if re.search(r"/libsqlite3[^/]*\.so", path) and os.path.exists(path):
                    return path
    except Exception:  # noqa: BLE001 - any doubt means "bundled"
        return None
    return None


def build_library(out_dir: Path, version: str) -> None:
    root = go_root()
    go = go_command()
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / library_name()
    mode = os.environ.get("WALSYNC_SQLITE", "auto").strip().lower() or "auto"
    if mode not in ("auto", "system", "bundled"):
        fail(f"WALSYNC_SQLITE={mode!r}: want auto, system or bundled")

    attempts: list[tuple[str, list[str], dict[str, str]]] = []
    if mode in ("auto", "system"):
        lib = python_libsqlite3()
        env = go_env()
        if lib:
            libdir = os.path.dirname(lib)
            env["CGO_LDFLAGS"] = (env.get("CGO_LDFLAGS", "") + f" -L{libdir}").strip()
            attempts.append((f"system SQLite ({lib}, shared with Python's sqlite3)", ["libsqlite3"], env))
        elif mode == "system":
            attempts.append(("system SQLite (-lsqlite3)", ["libsqlite3"], env))
        else:
            log("Python's sqlite3 module links no shared libsqlite3: using the bundled SQLite")
    if mode in ("auto", "bundled"):
        attempts.append(("bundled SQLite", [], go_env()))

    last = ""
    for what, tags, env in attempts:
        cmd = [
            go, "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false",
            "-ldflags", f"-s -w -X main.version={version}",
            "-o", str(out),
        ]
        if tags:
            cmd += ["-tags", ",".join(tags)]
        cmd.append("./cmd/libwalsync")
        log(f"compiling the Go library with {what} in {root} (the first build takes a minute)")
        log(" ".join(cmd))
        proc = subprocess.run(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode == 0:
            header = out.with_suffix(".h")
            if header.exists():
                header.unlink()
            log(f"built {out}")
            return
        last = proc.stdout
        log(f"go build with {what} failed:\n{proc.stdout}")
    fail(f"go build failed:\n{last}")


def go_packages(root: Path, go: str) -> set[Path]:
    """Directories of the walsync packages cmd/libwalsync needs, any build tags."""
    dirs: set[Path] = set()
    for tags in ("", "libsqlite3"):
        cmd = [go, "list", "-deps", "-f", "{{if .Module}}{{.Module.Path}} {{.Dir}}{{end}}"]
        if tags:
            cmd += ["-tags", tags]
        cmd.append("./cmd/libwalsync")
        proc = subprocess.run(cmd, cwd=root, env=go_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            fail(f"go list failed:\n{proc.stderr}")
        for line in proc.stdout.splitlines():
            mod, _, d = line.partition(" ")
            if mod == MODULE:
                dirs.add(Path(d))
    return dirs


def copy_go_tree(dest: Path) -> None:
    """Copy go.mod, go.sum and the sources of every package the library needs."""
    root = HERE.parent
    if not is_walsync_module(root):
        fail(f"{root} is not the walsync Go module: an sdist is made from a checkout")
    go = go_command()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir()
    for f in ("go.mod", "go.sum", "LICENSE"):
        if (root / f).exists():
            shutil.copy2(root / f, dest / f)
    n = 0
    for d in sorted(go_packages(root, go)):
        rel = d.relative_to(root)
        for src in sorted(d.iterdir()):
            if not src.is_file() or src.name.endswith("_test.go"):
                continue
            if src.suffix not in (".go", ".c", ".h", ".s"):
                continue
            target = dest / rel / src.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
            n += 1
    log(f"copied go.mod, go.sum and {n} Go source files into {dest}")


class BinaryDistribution(Distribution):
    """The wheel holds a native library: it is platform-specific."""

    def has_ext_modules(self) -> bool:  # noqa: D102
        return True


class BuildPy(build_py):
    """build_py, then the Go library into the package."""

    def run(self) -> None:  # noqa: D102
        super().run()
        if self.dry_run:
            return
        if getattr(self, "editable_mode", False):
            target = HERE / "walsync"
        else:
            target = Path(self.build_lib).resolve() / "walsync"
        build_library(target, self.distribution.get_version())


class SDist(sdist):
    """sdist with the Go sources in _go/ (removed again afterwards)."""

    def run(self) -> None:  # noqa: D102
        made = False
        if is_walsync_module(HERE.parent):  # a checkout: always a fresh copy
            copy_go_tree(VENDORED)
            made = True
        elif not is_walsync_module(VENDORED):
            fail("no Go sources to put in the sdist: make it from a checkout of the repository")
        try:
            super().run()
        finally:
            if made:
                shutil.rmtree(VENDORED, ignore_errors=True)


class BdistWheel(bdist_wheel):
    """The library is loaded with ctypes: any Python 3, one platform."""

    def finalize_options(self) -> None:  # noqa: D102
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:  # noqa: D102
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPy, "sdist": SDist, "bdist_wheel": BdistWheel},
)
