# Two entry points: `make reproduce` (the main job on the embedded simulator)
# and `make test` (the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BASE_DIR ?= runs/reproduce
QUICK ?=
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check --quiet

.PHONY: reproduce test venv clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip

# Re-install when setup.py changes; the stamp names the extras installed.
$(VENV)/.installed: setup.py | $(VENV)/bin/python
	$(PY) -m pip install $(PIP_FLAGS) -e '.[test,beam]'
	touch $@

venv: $(VENV)/.installed

reproduce: $(VENV)/.installed
	$(PY) experiments/reproduce.py --base_dir=$(BASE_DIR) \
	  --gin_file=gin/reproduce.gin $(if $(QUICK),--gin_file=gin/quick.gin,)

test: $(VENV)/.installed
	$(PY) -m pytest -n 2 -q tests

clean:
	rm -rf $(VENV) runs
