#!/usr/bin/env bash
# scripts/minio.sh: the real S3 server the tests run against.
#
#   scripts/minio.sh install          build the pinned MinIO (once; ~4 min) and print its path
#   scripts/minio.sh run -- CMD...    start a throw-away MinIO on loopback, run CMD, stop MinIO
#
# `run` exports for CMD:
#   WALSYNC_TEST_S3_ENDPOINT    http://127.0.0.1:PORT
#   WALSYNC_TEST_S3_ACCESS_KEY  the root user of this server
#   WALSYNC_TEST_S3_SECRET_KEY  its password (random for each run)
#   WALSYNC_TEST_MINIO_PID      the server's process id (benchmarks read its CPU time)
# and exits with CMD's status. MinIO's data directory is fresh for each run and
# removed afterwards, whatever happens to CMD.
#
# The binary is built from source with `go install` (the Go module proxy is the
# only source this needs) into
#   ${WALSYNC_TOOLS:-$HOME/.cache/walsync-tools}/minio-<version>/minio
# and reused when it is there.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
TOOLS_DIR=${WALSYNC_TOOLS:-$HOME/.cache/walsync-tools}
MINIO_DIR=$TOOLS_DIR/minio-$MINIO_VERSION
MINIO_BIN=$MINIO_DIR/minio
START_TIMEOUT=${WALSYNC_MINIO_START_TIMEOUT:-60}

log() { printf 'minio.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	cat >&2 <<EOF
usage: scripts/minio.sh install
       scripts/minio.sh run -- CMD [ARGS...]
EOF
	exit 2
}

install_minio() {
	if [[ -x $MINIO_BIN ]]; then
		log "using $MINIO_BIN"
		return 0
	fi
	command -v go >/dev/null || die "go is not on PATH: install Go to build MinIO"
	log "building $MINIO_MODULE@$MINIO_VERSION into $MINIO_DIR (takes a few minutes, once)"
	mkdir -p "$MINIO_DIR"
	local start=$SECONDS
	# Build outside any module so the project's go.mod plays no part.
	if ! (cd "$MINIO_DIR" && GOBIN=$MINIO_DIR GOFLAGS=-buildvcs=false GOWORK=off \
		go install "$MINIO_MODULE@$MINIO_VERSION"); then
		die "go install $MINIO_MODULE@$MINIO_VERSION failed"
	fi
	[[ -x $MINIO_BIN ]] || die "go install finished but $MINIO_BIN is missing"
	log "built $MINIO_BIN in $((SECONDS - start))s"
}

# port_in_use PORT: true when something answers on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: a loopback TCP port nobody listens on (racy by nature: run
# retries when MinIO cannot bind it).
free_port() {
	local port i
	for i in $(seq 1 100); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		if ! port_in_use "$port"; then
			echo "$port"
			return 0
		fi
	done
	die "no free loopback port found"
}

random_hex() { # random_hex NBYTES
	od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# health_live PORT: true when MinIO's liveness endpoint answers 200.
health_live() {
	local url="http://127.0.0.1:$1/minio/health/live"
	if command -v curl >/dev/null; then
		[[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null) == 200 ]]
		return
	fi
	local status
	status=$(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET /minio/health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		head -n1 <&3
	) 2>/dev/null || return 1
	[[ $status == *" 200"* ]]
}

MINIO_PID=
DATA_DIR=
cleanup() {
	if [[ -n $MINIO_PID ]] && kill -0 "$MINIO_PID" 2>/dev/null; then
		kill -TERM "$MINIO_PID" 2>/dev/null || true
		local i
		for i in $(seq 1 50); do
			kill -0 "$MINIO_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$MINIO_PID" 2>/dev/null || true
		wait "$MINIO_PID" 2>/dev/null || true
	fi
	MINIO_PID=
	if [[ -n $DATA_DIR && -d $DATA_DIR ]]; then
		rm -rf "$DATA_DIR"
	fi
	DATA_DIR=
}

# start_minio: start MinIO on a free port; sets PORT, MINIO_PID. Returns 1
# when it died because the port was taken (caller retries), exits otherwise.
start_minio() {
	PORT=$(free_port)
	CONSOLE_PORT=$(free_port)
	[[ $CONSOLE_PORT != "$PORT" ]] || CONSOLE_PORT=$(free_port)
	: >"$DATA_DIR/minio.log"
	MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
		MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=1 \
		"$MINIO_BIN" server --quiet --anonymous \
		--address "127.0.0.1:$PORT" --console-address "127.0.0.1:$CONSOLE_PORT" \
		"$DATA_DIR/data" >>"$DATA_DIR/minio.log" 2>&1 &
	MINIO_PID=$!
	local deadline=$((SECONDS + START_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$MINIO_PID" 2>/dev/null; then
			wait "$MINIO_PID" 2>/dev/null || true
			MINIO_PID=
			if grep -qi 'address already in use' "$DATA_DIR/minio.log"; then
				return 1
			fi
			log "MinIO exited before it was ready; last lines of its log:"
			tail -n 30 "$DATA_DIR/minio.log" >&2 || true
			exit 1
		fi
		if health_live "$PORT"; then
			return 0
		fi
		sleep 0.2
	done
	log "MinIO did not answer http://127.0.0.1:$PORT/minio/health/live within ${START_TIMEOUT}s; last lines of its log:"
	tail -n 30 "$DATA_DIR/minio.log" >&2 || true
	exit 1
}

run_with_minio() {
	(($# > 0)) || usage
	install_minio
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/walsync-minio.XXXXXX")
	mkdir -p "$DATA_DIR/data"
	ACCESS_KEY=walsync-$(random_hex 6)
	SECRET_KEY=$(random_hex 20)
	local attempt started=
	for attempt in 1 2 3 4 5; do
		if start_minio; then
			started=1
			break
		fi
		log "port $PORT was taken, trying another"
	done
	[[ -n $started ]] || die "MinIO could not bind a port after 5 tries"
	log "MinIO ready on http://127.0.0.1:$PORT (pid $MINIO_PID, data $DATA_DIR/data)"

	export WALSYNC_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT
	export WALSYNC_TEST_S3_ACCESS_KEY=$ACCESS_KEY
	export WALSYNC_TEST_S3_SECRET_KEY=$SECRET_KEY
	export WALSYNC_TEST_MINIO_PID=$MINIO_PID
	local status=0
	"$@" || status=$?
	log "stopping MinIO (command exited with status $status)"
	cleanup
	exit "$status"
}

case ${1:-} in
install)
	(($# == 1)) || usage
	install_minio
	echo "$MINIO_BIN"
	;;
run)
	shift
	[[ ${1:-} == -- ]] && shift
	run_with_minio "$@"
	;;
*)
	usage
	;;
esac
