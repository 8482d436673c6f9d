# netsentry — `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_WS ?= workspace/demo
# tests run on 2 workers; override with `make test PYTEST_ARGS=...`
PYTEST_ARGS ?= -n 2

.DEFAULT_GOAL := help
.PHONY: help setup tshark demo test lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP) tshark ## create .venv and install netsentry with its dev extras (and tshark when root)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch; a bare `torch` would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

tshark: ## install tshark through apt when missing (root), else say how
	@command -v tshark >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing tshark (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; \
	  else \
	    echo "tshark is missing: install it with 'sudo apt-get install tshark' (tests that need it are skipped)"; \
	  fi; }

demo: setup ## simulate the demo cloud, then run capture and flows on it
	$(BIN)/netsentry simulate --scenario configs/scenarios/demo.yaml --out $(DEMO_WS)/sim
	$(BIN)/netsentry capture $(DEMO_WS)/sim/vm.pcap -w $(DEMO_WS) --tenants $(DEMO_WS)/sim/tenants.yaml
	$(BIN)/netsentry flows -w $(DEMO_WS)
	@echo "captures and ground truth: $(DEMO_WS)/sim/ (labels.csv); tables: $(DEMO_WS)/packets, $(DEMO_WS)/flows"

test: setup ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup ## ruff
	$(BIN)/ruff check .

bench: setup ## capture + flows vs tshark/pyshark/dpkt, simulate vs scapy (prints ratios)
	$(BIN)/python -m bench.capture_flows
	$(BIN)/python -m bench.simulate

clean: ## remove the venv, workspaces and caches
	rm -rf $(VENV) workspace .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
