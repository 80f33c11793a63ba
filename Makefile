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
# minutes (capacity: 10-20 min); `bench/pipeline.py --quick` is faster.
bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/receive.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/capacity.py

clean:
	rm -rf $(VENV) build *.egg-info
