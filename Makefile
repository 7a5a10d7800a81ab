# m2ctr: the two commands are `make demo` and `make test`; everything else is a step of them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch is installed first so that the range in pyproject.toml
# is already satisfied and pip never pulls a multi-GB CUDA build. Add index
# options for your site in TORCH_PIP_ARGS if this exact wheel is not at hand.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EXTRAS ?= dev

export CTR_RAW_PATH ?= $(CURDIR)/data/raw
export CTR_WAREHOUSE_DIR ?= $(CURDIR)/data/warehouse
export HF_HUB_OFFLINE ?= 1
# Java options of every local Spark start: they map the JVM's class-data archive that `install`
# records (m2ctr/jvm.py), or are empty while there is none. Expanded when a recipe runs.
export CTR_JAVA_OPTIONS ?= $(shell test -x $(PY) && $(PY) -m m2ctr.jvm options 2>/dev/null)
export TRANSFORMERS_OFFLINE ?= 1

# The demo always reads its own sample, whatever CTR_RAW_PATH says outside it.
# DEMO_LANG=zh writes the same world in Chinese; its sample, warehouse and run sit beside the
# English ones (suffix -zh), so both can be compared.
DEMO_LANG ?= en
DEMO_SUFFIX := $(if $(filter en,$(DEMO_LANG)),,-$(DEMO_LANG))
DEMO_RAW ?= $(CURDIR)/data/raw$(DEMO_SUFFIX)
# Expanded once here: the demo target exports it back as CTR_WAREHOUSE_DIR.
ifeq ($(origin DEMO_WAREHOUSE),undefined)
DEMO_WAREHOUSE := $(CTR_WAREHOUSE_DIR)$(DEMO_SUFFIX)
endif
DEMO_ROWS ?= 200000
DEMO_DAYS ?= 14
DEMO_SEED ?= 7
DEMO_RUN ?= runs/demo-fusion$(DEMO_SUFFIX)
PYTEST_ARGS ?=

.PHONY: help install demo data features quality train test test-fast bench clean

help:
	@echo "make demo      sample logs -> dbt build -> data quality -> trainer fit fusion -> test metrics"
	@echo "               (DEMO_LANG=zh: the same sample with its text in Chinese)"
	@echo "make test      install into $(VENV) and run the whole test suite"
	@echo "make test-fast the suite without the slow end-to-end tests"
	@echo "make features  dbt build of the warehouse from CTR_RAW_PATH into CTR_WAREHOUSE_DIR"
	@echo "make quality   Great Expectations suites over the built warehouse"
	@echo "make bench     benchmarks (installs the bench extra)"

install: $(VENV)/.installed-$(EXTRAS)

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m m2ctr.jvm archive
	touch $@

# Regenerated only when the requested sample differs from what is on disk; the
# generator replaces only its own files, never other CSVs in that directory.
demo data: export CTR_RAW_PATH = $(DEMO_RAW)
demo: export CTR_WAREHOUSE_DIR = $(DEMO_WAREHOUSE)
# Named on the command line too (`make data features DEMO_LANG=zh`), a step reads and writes that
# language's sample and warehouse, never the English ones.
ifneq ($(DEMO_LANG),en)
features features-full-refresh quality train: export CTR_RAW_PATH = $(DEMO_RAW)
features features-full-refresh quality train: export CTR_WAREHOUSE_DIR = $(DEMO_WAREHOUSE)
endif
data: install
	@want="$(DEMO_ROWS) $(DEMO_DAYS) $(DEMO_SEED)$(DEMO_SUFFIX)"; \
	have=$$(cat "$(CTR_RAW_PATH)/.demo-args" 2>/dev/null || true); \
	if [ "$$want" != "$$have" ]; then \
	  $(PY) -m synthetic generate --rows $(DEMO_ROWS) --days $(DEMO_DAYS) --seed $(DEMO_SEED) --lang $(DEMO_LANG) --out "$(CTR_RAW_PATH)"; \
	  echo "$$want" > "$(CTR_RAW_PATH)/.demo-args"; \
	else echo "sample logs already in $(CTR_RAW_PATH)"; fi

# Incremental: processes only the raw files that are new or changed since the last build (the
# first build is a full one); features-full-refresh rebuilds every table from all raw files.
features: install
	cd warehouse && ../$(VENV)/bin/dbt build --profiles-dir .. --exclude-resource-type unit_test

.PHONY: features-full-refresh
features-full-refresh: install
	cd warehouse && ../$(VENV)/bin/dbt build --profiles-dir .. --full-refresh --exclude-resource-type unit_test

quality: install
	$(PY) -m expectations validate --target local

# The recipe of the README's ladder, seed 0: the demo reproduces that table's first fusion run
# (one seed and thread count give one result on CPU).
train: install
	rm -rf $(DEMO_RUN)
	$(PY) -m trainer fit fusion --out $(DEMO_RUN) --seed 0 --epochs 4 --threads 1 --report

demo: data features quality train
	@echo; echo "== test metrics ($(DEMO_RUN)/metrics.json) =="
	@$(PY) -c "import json; m = json.load(open('$(DEMO_RUN)/metrics.json')); t = m['test']; \
	print(json.dumps({k: t[k] for k in ('n', 'auc', 'gauc', 'logloss', 'per_scene_auc', 'cold_start')}, indent=2))"
	@echo; echo "== reports (open in a browser) =="
	@r="$(abspath $(DEMO_RUN))/report.html"; q="$(CURDIR)/reports/data_quality/data_docs/index.html"; \
	echo "run report:   $$r$$(test -f "$$r" || echo '  (missing: $(PY) -m trainer report $(DEMO_RUN))')"; \
	echo "data quality: $$q$$(test -f "$$q" || echo '  (missing: make quality)')"

# pytest exits 5 when it collected no test: that is a failure, never a pass.
test: install
	rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: PYTEST_ARGS += -m "not slow"
test-fast: test

bench:
	$(MAKE) install EXTRAS=dev,bench
	$(PY) bench/warehouse.py
	$(PY) bench/trainer.py
	$(PY) bench/embeddings.py

clean:
	rm -rf data runs reports warehouse/target warehouse/logs spark-warehouse metastore_db derby.log
