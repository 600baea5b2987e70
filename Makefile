# Two commands do all set-up on a fresh machine:
#   make demo   create .venv if needed, then run the nightly scoring job end to end on the embedded dataset
#   make test   create .venv if needed, then run the whole test suite
# TORCH_SPEC pins the CPU build of torch; install it before the project so nothing pulls a CUDA build.
# On a machine without a local torch wheel, point pip at PyTorch's CPU wheel index (PIP_EXTRA_INDEX_URL).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: venv
	$(PY) jobs/score.py

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf artifacts .pytest_cache
