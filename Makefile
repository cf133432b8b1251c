# The user's list of verbs. `make` (or `make help`) lists them with the variables they take.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/video-pipeline
STAMP := $(VENV)/.installed

MANIFEST ?= manifests/demo.csv## manifest CSV for `features`
BACKBONE ?= mobilenet_v2## keras.applications backbone
WEIGHTS ?= imagenet## imagenet, none, or a weights file path
SAMPLING ?= uniform:16## uniform:K, fps:F, stride:N or all
IMAGE_SIZE ?= 224## CNN input size in pixels
STORE ?=## store for `train`/`inspect`: .h5 file, its folder or a manifest (default: MANIFEST's store)
MODEL ?= gru## lstm, gru, mean, single-frame or all
RUN ?=## run directory for `report` / `predict`
MAX_FAILURES ?=## failed videos `features` allows before exiting 1: a share (0.1, the default) or a count
SCHEDULER ?=## dask scheduler address, e.g. tcp://host:8786 (default: local)
VIDEOS ?=## videos or folders for `predict`
MOVING_MNIST ?= sklearn## mnist_test_seq.npy, MNIST digit files to generate from, or sklearn (`convlstm`)
CONVLSTM_MINUTES ?= 12## minutes `convlstm` may take in all: it plans the epochs that fit (--time-budget)
SHARED_DATA ?= ../shared/data## real videos and weights for `bench`, `temporal-bench` and the tests
DEMO_RUNS := reports/demo reports/convlstm-demo

.PHONY: help install demo-data features inspect train report predict test test-fast lint bench clean demo convlstm temporal-bench

help: ## list the targets and the variables they take
	@echo "Targets:"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'
	@echo "Variables (current value):"
	@grep -E '^[A-Z_]+ \?=.*## ' $(MAKEFILE_LIST) | sed -E 's/ \?= ?([^#]*)## (.*)/\t\1\t\2/' | awk -F'\t' '{printf "  %-16s %-20s %s\n", $$1, ($$2 == "" ? "(empty)" : $$2), $$3}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev,cpu]"
	touch $@

install: $(STAMP) ## create .venv and install the package with its test tools and the OpenVINO CPU runtime

manifests/demo.csv: $(STAMP) pipeline/dataset/demo.py
	$(CLI) demo-data --output manifests/demo --manifest $@

demo-data: $(STAMP) ## write the synthetic demo clips and manifests/demo.csv
	$(CLI) demo-data --output manifests/demo --manifest manifests/demo.csv

features: $(STAMP) ## stage one: embed the videos of MANIFEST into an HDF5 store
	$(CLI) features --manifest $(MANIFEST) --backbone $(BACKBONE) --weights $(WEIGHTS) \
		--sampling $(SAMPLING) --image-size $(IMAGE_SIZE) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
		$(if $(MAX_FAILURES),--max-failures $(MAX_FAILURES))

inspect: $(STAMP) ## print a store's config, counts and failures (STORE, default: MANIFEST's store)
	$(CLI) inspect $(or $(STORE),$(MANIFEST))

# The demo is sized for a 2-core CPU (under 5 minutes): 180 clips, 8 of each clip's 24 frames, the offline
# fallback's random VGG16 at 64 px, at most 30 epochs per classifier, and a ConvLSTM of 48 sequences within a
# 2-minute budget. The store's path is
# passed on in the shell, so another store of the demo's manifest (another BACKBONE, say) is never picked instead.
demo: demo-data ## the whole job on the embedded demo data, offline: every stage, a few minutes on a 2-core CPU
	store=$$($(CLI) features --manifest manifests/demo.csv --backbone $(BACKBONE) --weights $(WEIGHTS) \
		--sampling uniform:8 --image-size $(IMAGE_SIZE) --fallback --fallback-size 64) && \
	$(CLI) inspect $$store && \
	$(CLI) train --store $$store --model all --epochs 30 --run reports/demo --overwrite
	$(CLI) convlstm --sequences 48 --epochs 3 --time-budget 2 --examples 2 --run reports/convlstm-demo --overwrite
	$(CLI) predict reports/demo $$(awk -F, '$$3 == "test" {print "manifests/" $$1}' manifests/demo.csv | head -4) --no-progress
	@echo
	@echo "Demo outputs:"
	@echo "  feature store      features/demo/  (\`make inspect\` describes it)"
	@echo "  classification     reports/demo/index.html  (models and predictions: reports/demo/model/)"
	@echo "  next-frame (ConvLSTM) reports/convlstm-demo/index.html"
	@echo "  predictions        reports/demo/predictions/predictions.csv"
	@echo "  all runs           reports/index.html"

train: $(STAMP) ## stage two: train MODEL on STORE (default: MANIFEST's store) into RUN (default reports/<dataset>-<model>)
	$(CLI) train --store $(or $(STORE),$(MANIFEST)) --model $(MODEL) $(if $(RUN),--run $(RUN))

report: $(STAMP) ## (re)write the report of RUN (default: every training run) and reports/index.html
	$(CLI) report $(RUN)

predict: $(STAMP) ## classify VIDEOS (files or folders) with a trained RUN; prints top-k, writes CSV/JSON
	$(CLI) predict $(RUN) $(VIDEOS)

bench: manifests/demo.csv ## measure stage one (CNN, decode, end to end, naive baseline, memory) into reports/bench/
	@mkdir -p reports/bench
	set -o pipefail; $(CLI) bench --videos $(abspath $(SHARED_DATA))/videos \
		--weights $(abspath $(SHARED_DATA))/weights/mobilenet_v2_1.0_no_top_dogbreeds.weights.h5 --output reports/bench/bench.json | tee reports/bench/bench.md

temporal-bench: $(STAMP) ## sequence models on temporal tasks (motion, clutter, arrow of time on ../shared/data) into reports/temporal-bench/
	$(CLI) temporal-bench --output reports/temporal-bench --shared-data $(abspath $(SHARED_DATA))

convlstm: $(STAMP) ## ConvLSTM next-frame prediction on Moving MNIST (MOVING_MNIST) into reports/convlstm-*/, under 15 min
	$(CLI) convlstm --data $(MOVING_MNIST) --time-budget $(CONVLSTM_MINUTES) --overwrite

test: $(STAMP) ## run the whole test suite (tests of SHARED_DATA, default ../shared/data, skip without it)
	SHARED_DATA=$(abspath $(SHARED_DATA)) $(PY) -m pytest -q -ra

test-fast: $(STAMP) ## the inner loop: the tests not marked slow
	SHARED_DATA=$(abspath $(SHARED_DATA)) $(PY) -m pytest -q -ra -m "not slow"

lint: $(STAMP) ## check the code with ruff (pyflakes, isort, line length, formatting; the rules are in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Only what the demo and the tests generate: the demo's clips, the stores of manifests/demo.csv (not those of another
# demo.csv beside them), the demo's runs and the caches. Stores and runs of your own manifests stay; delete those
# by hand (a store is <name>.h5 plus <name>.h5.segments/ and <name>.failures.csv beside it).
clean: ## remove what the demo and tests made (demo clips, store and runs, caches); keeps your stores and runs
	rm -rf manifests/demo/ $(DEMO_RUNS) .pytest_cache .ruff_cache
	rm -rf pipeline/__pycache__ pipeline/*/__pycache__ tests/__pycache__
	@if [ -x $(CLI) ]; then $(CLI) demo-data --manifest manifests/demo.csv --remove-stores; \
	else echo "no $(CLI): the demo's stores in features/demo/ are left (make install, then make clean)"; fi
