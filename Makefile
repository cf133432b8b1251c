# The user's list of verbs. `make` (or `make help`) lists them with the variables they take.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

MANIFEST ?= manifests/demo.csv## manifest CSV for `features`
BACKBONE ?= mobilenet_v2## keras.applications backbone
WEIGHTS ?= imagenet## imagenet, none, or a weights file path
SAMPLING ?= uniform:16## uniform:K, fps:F, stride:N or all
IMAGE_SIZE ?= 224## CNN input size in pixels
STORE ?=## feature store for `train` (default: the demo store)
MODEL ?= gru## lstm, gru, mean, single-frame or all
RUN ?=## run directory for `report` / `predict`
SCHEDULER ?=## dask scheduler address, e.g. tcp://host:8786 (default: local)
VIDEOS ?=## videos or folders for `predict`
MOVING_MNIST ?= sklearn## mnist_test_seq.npy, MNIST digit files to generate from, or sklearn (`convlstm`)
SHARED_DATA ?= ../shared/data## real videos and weights for `bench`, `temporal-bench` and the tests

DEMO_STORE_FILE := features/demo/.store-path

.PHONY: help install demo-data features inspect train report predict test test-fast lint bench clean demo convlstm temporal-bench

help: ## list the targets and the variables they take
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "Variables (current value):"
	@grep -E '^[A-Z_]+ \?=.*## ' $(MAKEFILE_LIST) | sed -E 's/ \?= ?([^#]*)## (.*)/\t\1\t\2/' | awk -F'\t' '{printf "  %-11s %-22s %s\n", $$1, ($$2 == "" ? "(empty)" : $$2), $$3}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev,cpu]"
	touch $@

install: $(STAMP) ## create .venv and install the package with its test tools and the OpenVINO CPU runtime

manifests/demo.csv: $(STAMP) pipeline/dataset/demo.py
	$(PY) -m pipeline demo-data --output manifests/demo --manifest $@

demo-data: $(STAMP) ## write the synthetic demo clips and manifests/demo.csv
	$(PY) -m pipeline demo-data --output manifests/demo --manifest manifests/demo.csv

features: $(STAMP) ## stage one: embed the videos of MANIFEST into an HDF5 store
	$(PY) -m pipeline features --manifest $(MANIFEST) --backbone $(BACKBONE) --weights $(WEIGHTS) \
		--sampling $(SAMPLING) --image-size $(IMAGE_SIZE) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

inspect: $(STAMP) ## print a store's config, counts and failures (STORE=...)
	$(PY) -m pipeline inspect $(or $(STORE),$$(cat $(DEMO_STORE_FILE)))

demo: demo-data ## the whole job on the embedded demo data, offline
	@mkdir -p features/demo
	$(PY) -m pipeline features --manifest manifests/demo.csv --backbone $(BACKBONE) --weights $(WEIGHTS) \
		--sampling $(SAMPLING) --image-size $(IMAGE_SIZE) --fallback > $(DEMO_STORE_FILE)
	$(PY) -m pipeline inspect $$(cat $(DEMO_STORE_FILE))
	$(PY) -m pipeline train --store $$(cat $(DEMO_STORE_FILE)) --model all --run reports/demo --overwrite
	$(PY) -m pipeline convlstm --sequences 120 --epochs 4 --batch-size 4 --examples 2 --run reports/convlstm-demo --overwrite
	$(PY) -m pipeline predict reports/demo $$(awk -F, '$$3 == "test" {print "manifests/" $$1}' manifests/demo.csv | head -4) --no-progress
	@echo
	@echo "Demo outputs:"
	@echo "  feature store      $$(cat $(DEMO_STORE_FILE))"
	@echo "  classification     reports/demo/index.html  (models and predictions: reports/demo/model/)"
	@echo "  next-frame (ConvLSTM) reports/convlstm-demo/index.html"
	@echo "  predictions        reports/demo/predictions/predictions.csv"
	@echo "  all runs           reports/index.html"

train: $(STAMP) ## stage two: train MODEL on STORE into RUN (default reports/<dataset>-<model>), then write its report
	$(PY) -m pipeline train --store $(or $(STORE),$$(cat $(DEMO_STORE_FILE))) --model $(MODEL) $(if $(RUN),--run $(RUN))

report: $(STAMP) ## (re)write the report of RUN (default: every training run) and reports/index.html
	$(PY) -m pipeline report $(RUN)

predict: $(STAMP) ## classify VIDEOS (files or folders) with a trained RUN; prints top-k, writes CSV/JSON
	$(PY) -m pipeline predict $(RUN) $(VIDEOS)

bench: manifests/demo.csv ## measure stage one (CNN, decode, end to end, naive baseline, memory) into reports/bench/
	@mkdir -p reports/bench
	set -o pipefail; $(PY) -m pipeline bench --videos $(abspath $(SHARED_DATA))/videos \
		--weights $(abspath $(SHARED_DATA))/weights/mobilenet_v2_1.0_no_top_dogbreeds.weights.h5 --output reports/bench/bench.json | tee reports/bench/bench.md

temporal-bench: $(STAMP) ## sequence models on temporal tasks (motion, clutter, arrow of time on ../shared/data) into reports/temporal-bench/
	$(PY) -m pipeline temporal-bench --output reports/temporal-bench --shared-data $(abspath $(SHARED_DATA))

convlstm: $(STAMP) ## ConvLSTM next-frame prediction on Moving MNIST (MOVING_MNIST) into reports/convlstm-*/
	$(PY) -m pipeline convlstm --data $(MOVING_MNIST) --overwrite

test: $(STAMP) ## run the whole test suite (tests of SHARED_DATA, default ../shared/data, skip without it)
	SHARED_DATA=$(abspath $(SHARED_DATA)) $(PY) -m pytest -q -ra

test-fast: $(STAMP) ## the inner loop: the tests not marked slow
	SHARED_DATA=$(abspath $(SHARED_DATA)) $(PY) -m pytest -q -ra -m "not slow"

lint: $(STAMP) ## check the code with ruff (pyflakes, isort, line length, formatting; the rules are in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean: ## remove generated features, reports and demo clips (keeps .venv)
	rm -rf features/*/ reports/*/ reports/index.html manifests/demo/ .pytest_cache
