# The two commands a newcomer needs: `make serve` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

SSLYZE_VENV := .venv-sslyze

.PHONY: install serve test bench lint docs-images sslyze

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

serve: install
	$(VENV)/bin/roost serve $(ARGS)

test: install sslyze
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m bench $(BENCH_ARGS)

# Run the Studio's browser tests and keep their screenshots in docs/images/ (docs/studio.md shows them).
docs-images: install
	STUDIO_DOCS_IMAGES=1 $(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)

# The TLS scanner lives in its own virtualenv: its cryptography pin conflicts with Roost's.
sslyze: $(SSLYZE_VENV)/.installed

$(SSLYZE_VENV)/.installed: tests/sslyze-requirements.txt
	$(PYTHON) -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/python -m pip install -q -r tests/sslyze-requirements.txt
	touch $@
