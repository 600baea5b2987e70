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
# Two xdist workers: the tests marked `ray` run one at a time in one of them, the rest beside (tests/conftest.py).
PYTEST_WORKERS ?= 2

.PHONY: demo test venv clean report-quick report-quick-models report-quick-evaluate

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
	$(PY) -m pytest tests -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# make report-quick DATASET=ml-latest-small|beauty|sports|beauty-sports: the evaluation report end to end on real data
# (../shared/data) with the tiny presets: every job reads configs/$(DATASET).yaml, then configs/overlays/quick.yaml
# (three tools for one epoch, a 4-step VLM on one Ray Train worker, calibration on 24 users, evaluate --quick on 24
# users) and, for a single source, configs/overlays/slice.yaml (a seeded 80-user slice). paths.root=$(QUICK) moves
# every folder those files name under $(QUICK): {datasets,tools,vlm,reports}/$(DATASET) (deleted first: a VLM run
# folder would resume). tests/jobs/test_evaluate_real.py runs this target (QUICK=a temporary folder), so CI checks
# these commands.
DATASET ?= ml-latest-small
QUICK ?= artifacts/quick
Q_DATA = $(QUICK)/datasets/$(DATASET)
Q_TOOLS = $(QUICK)/tools/$(DATASET)
Q_VLM = $(QUICK)/vlm/$(DATASET)
Q_REPORT = $(QUICK)/reports/$(DATASET)
Q_CONFIG = --config configs/$(DATASET).yaml --config configs/overlays/quick.yaml

# DATASET=beauty-sports merges the two slices whole and compares with their quick models: run it after beauty and sports
# (its report-quick-models needs only their prepared slices; its report-quick-evaluate needs their quick models).
ifneq ($(DATASET),beauty-sports)
Q_CONFIG += --config configs/overlays/slice.yaml
endif

report-quick: report-quick-models report-quick-evaluate

# The first four jobs (the data, the tools, the VLM and its policy), then the report.
report-quick-models: venv
	rm -rf $(Q_DATA) $(Q_TOOLS) $(Q_VLM) $(Q_REPORT)
	$(PY) jobs/prepare_data.py $(Q_CONFIG) paths.root=$(QUICK)
	$(PY) jobs/train_tools.py $(Q_CONFIG) paths.root=$(QUICK)
	$(PY) jobs/train_vlm.py $(Q_CONFIG) paths.root=$(QUICK)
	$(PY) jobs/calibrate.py $(Q_CONFIG) paths.root=$(QUICK)

report-quick-evaluate: venv
	$(PY) jobs/evaluate.py $(Q_CONFIG) paths.root=$(QUICK) --quick

clean:
	rm -rf artifacts .pytest_cache
