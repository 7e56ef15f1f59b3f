# Two commands on a fresh machine: `make demo` and `make test`.
# Each one creates or refreshes .venv by itself (fast when nothing changed).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A local CPU wheel of torch lies here on the machines we run on; pip uses it
# instead of the registry's CUDA build.
WHEELS := $(wildcard /opt/wheels)
FIND_LINKS := $(if $(WHEELS),--find-links $(WHEELS),)

.PHONY: setup demo test bench peers clean system-deps

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	# torch first and pinned, so nothing later can pull a CUDA build.
	$(BIN)/pip install -q $(FIND_LINKS) torch==2.13.0
	$(BIN)/pip install -q $(FIND_LINKS) -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: $(STAMP)
	$(BIN)/srprune demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/engines.py

# The peer engines of benchmarks/peers.py, in a venv of their own (several GB; never needed by demo or test).
PEERS_VENV := .venv-peers
$(PEERS_VENV)/.installed: benchmarks/peers-requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q $(FIND_LINKS) torch==2.13.0
	echo torch==2.13.0 > $(PEERS_VENV)/constraints.txt
	$(PEERS_VENV)/bin/pip install -q $(FIND_LINKS) -c $(PEERS_VENV)/constraints.txt -r benchmarks/peers-requirements.txt
	touch $@

peers: $(PEERS_VENV)/.installed $(STAMP)
	$(BIN)/python benchmarks/peers.py --peers-python $(PEERS_VENV)/bin/python

clean:
	rm -rf $(VENV) $(PEERS_VENV) .pytest_cache
