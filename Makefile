# The two commands a newcomer needs: `make serve` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

SSLYZE_VENV := .venv-sslyze

# The Debian packages the browser, TLS and benchmark tests need (one list, read by .ci/run too).
DEBIAN_PACKAGES := $(shell cat .ci/debian-packages)
# The programs those packages bring, as the tests look for them.
TEST_PROGRAMS := chromium go nginx curl openssl node npm
# node and npm come with Debian's nodejs and npm, installed only when npm is missing (NodeSource's nodejs brings npm
# and conflicts with Debian's npm package).
NODE_PACKAGES := nodejs npm
# The official Node.js client for tests/test_ravendb_node.py, exactly as tests/node/package-lock.json pins it.
NODE_MODULES := tests/node/node_modules/.installed

.PHONY: install install-test system-deps node-deps serve test bench lint docs-images sslyze

# `make serve`: Roost and its runtime dependencies only.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# `make test`: the test extras too (pytest, Playwright, the RavenDB client, mypy, ...).
install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# The Debian packages, installed when this user can (root with apt-get); otherwise one line naming them.
system-deps:
	@missing=""; for p in $(TEST_PROGRAMS); do PATH="$$PATH:/usr/sbin" command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  node=""; command -v npm >/dev/null 2>&1 || node=" $(NODE_PACKAGES)"; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing the Debian packages the tests need (missing:$$missing)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES)$$node; \
	  else \
	    echo "make test needs these Debian packages (missing:$$missing): sudo apt-get install $(DEBIAN_PACKAGES)$$node"; \
	    exit 1; \
	  fi; \
	fi

serve: install
	$(VENV)/bin/roost serve $(ARGS)

# The TLS and allowlist guarantees run once more on the other event loop (Server.EventLoop; tests/conftest.py).
UVLOOP_TESTS := tests/test_allowlist.py tests/test_authentication.py tests/test_server_certificate.py tests/test_tls_scan.py

node-deps: system-deps $(NODE_MODULES)

$(NODE_MODULES): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund
	touch $@

test: install-test sslyze system-deps node-deps
	$(PY) -m pytest $(PYTEST_ARGS)
ifeq ($(PYTEST_ARGS),)
	TEST_EVENT_LOOP=uvloop $(PY) -m pytest $(UVLOOP_TESTS)
endif

bench: install-test system-deps
	$(PY) -m bench $(BENCH_ARGS)

# Run the Studio's browser tests and keep their screenshots in docs/images/ (docs/studio.md shows them).
docs-images: install-test system-deps
	STUDIO_DOCS_IMAGES=1 $(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)

# The TLS scanner lives in its own virtualenv: its cryptography pin conflicts with Roost's.
sslyze: $(SSLYZE_VENV)/.installed

$(SSLYZE_VENV)/.installed: tests/sslyze-requirements.txt
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install -q -r tests/sslyze-requirements.txt
	touch $@
