# walsync: `make build` puts bin/walsync in place; `make test` runs
# everything (lint, unit and end-to-end tests against a real MinIO, short
# fuzz runs) and installs what it needs on a fresh machine.

GO        ?= go
TOOLS     ?= $(HOME)/.cache/walsync-tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)/staticcheck
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Execution counts, not durations: with a duration, go1.26's fuzz
# coordinator can fail a run that found nothing with "context deadline
# exceeded" at the deadline (golang/go#75804, fixed in go1.27); a count has
# no deadline to race. 300000 executions take 3 to 10 s per target here.
FUZZTIME  ?= 300000x

# Every fuzz target, as package:Target.
FUZZ_TARGETS := \
	./wal:FuzzScanner \
	./wal:FuzzParseHeader \
	.:FuzzObjectReader \
	.:FuzzParseKey \
	.:FuzzParseDBHeader \
	.:FuzzParseIndex \
	.:FuzzSegmentChain \
	./replicate:FuzzReadWALIndexHeader \
	./replicate:FuzzScanOpen

.PHONY: all build sysdeps test unit lint fuzz bench clean tools

all: build

# bin/libwalsync.so is the walsync VFS as a loadable SQLite extension
# (.load bin/libwalsync in the sqlite3 shell) and the C library the Python
# package binds. It links the system libsqlite3 (-tags libsqlite3), so that
# the VFS registers into the SQLite of the program that loads it.
build: sysdeps
	@mkdir -p bin
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/walsync ./cmd/walsync
	$(GO) build -trimpath -buildmode=c-shared -tags libsqlite3 -ldflags "-s -w -X main.version=$(VERSION)" -o bin/libwalsync.so ./cmd/libwalsync
	@rm -f bin/libwalsync.h

# The system SQLite the extension links and the sqlite3 shell its tests
# drive: installed from Debian's packages when missing.
sysdeps:
	@if [ ! -f /usr/include/sqlite3.h ] || ! command -v sqlite3 >/dev/null; then \
		echo "installing sqlite3 and libsqlite3-dev"; \
		(apt-get update -qq && apt-get install -y -qq sqlite3 libsqlite3-dev) >/dev/null || \
			{ echo "make: need the sqlite3 shell and libsqlite3-dev (apt-get install sqlite3 libsqlite3-dev)"; exit 1; }; \
	fi

$(STATICCHECK):
	@echo "installing staticcheck $(STATICCHECK_VERSION) into $(dir $@)"
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(STATICCHECK)
	scripts/minio.sh install

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^python/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

# unit + end-to-end tests, with -race, against a real MinIO started for the run.
unit: build
	scripts/minio.sh run -- $(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=1000x $$pkg || exit 1; \
	done

test: lint unit fuzz pytest

bench: build
	bench/run.sh

clean:
	rm -rf bin

# The Python package (python/). `make python` builds its sdist and, from
# that sdist, a wheel (which compiles cmd/libwalsync with Go) into
# python/dist; `make pytest` installs that wheel into a venv and runs
# python/tests against a fresh MinIO. The venv (pytest, build) is kept in
# $(PYVENV).
PYTHON    ?= python3
PYVENV    ?= $(TOOLS)/venv
PYVENV_PY := $(PYVENV)/bin/python

.PHONY: python pytest pyvenv

pyvenv:
	@$(PYVENV_PY) -c '' 2>/dev/null || $(PYTHON) -m venv --clear $(PYVENV)
	$(PYVENV_PY) -m pip install --quiet --disable-pip-version-check "pytest>=7" "build>=1"

python: pyvenv
	rm -rf python/dist
	@echo "python -m build --outdir python/dist python (log: $(PYVENV)/build.log)"
	@$(PYVENV_PY) -m build --outdir python/dist python >$(PYVENV)/build.log 2>&1 || { tail -n 60 $(PYVENV)/build.log; exit 1; }
	@ls python/dist

pytest: python
	$(PYVENV_PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps python/dist/walsync-*.whl
	WALSYNC_TEST_REQUIRE_S3=1 scripts/minio.sh run -- $(PYVENV_PY) -m pytest -q -p no:cacheprovider python/tests
