# The two commands a newcomer needs: `make serve` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install serve test bench lint docs-images

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

serve: install
	$(VENV)/bin/roost serve $(ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) -m bench $(BENCH_ARGS)

# Run the Studio's browser tests and keep their screenshots in docs/images/ (docs/studio.md shows them).
docs-images: install
	STUDIO_DOCS_IMAGES=1 $(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)
