# Two commands on a fresh machine with only python3.11: `make demo`, `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m harness simulate

# Types first (mypy --strict on chunkrecorder/ and harness/, configured in pyproject.toml), then the tests.
test: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Each bench prints its figures and ratios; the README quotes them. Full runs take
# minutes to an hour (capacity: 10 minutes sustained per point, up to four points);
# `bench/pipeline.py --quick` and `bench/capacity.py --seconds 60` are faster.
bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/receive.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/capacity.py

clean:
	rm -rf $(VENV) build *.egg-info
