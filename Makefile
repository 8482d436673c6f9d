# netsentry — `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# fixed: configs/demo-*.yaml name these paths
DEMO_WS := workspace/demo
# tests run on 2 workers; tests marked xdist_group("mixed") share one (and its session fixtures)
PYTEST_ARGS ?= -n 2 --dist loadgroup

.DEFAULT_GOAL := help
.PHONY: help setup tshark chromium lab-tools demo lab test lint bench clean

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

# $(call apt_tool,COMMAND,WHAT IT IS FOR): install COMMAND's Debian package when missing and root, else say how
define apt_tool
	@command -v $(1) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(1) (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	  else \
	    echo "$(1) is missing: install it with 'sudo apt-get install $(1)' ($(2) are skipped)"; \
	  fi; }
endef

tshark: ## install tshark through apt when missing (root), else say how
	$(call apt_tool,tshark,tests that need it)

chromium: ## install chromium through apt when missing (root), else say how (browser test of report.html)
	$(call apt_tool,chromium,the report's browser tests)

# program:package pairs the lab runs (netsentry.pipeline.lab.shell.TOOL_PACKAGES)
LAB_TOOLS := ip:iproute2 tc:iproute2 nft:nftables ethtool:ethtool tcpdump:tcpdump nmap:nmap hping3:hping3 hydra:hydra \
  sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client dnsmasq:dnsmasq-base iodine:iodine \
  ifconfig:net-tools arpspoof:dsniff vsftpd:vsftpd
LAB_DIR := workspace/lab

lab-tools: ## install the lab's tools (nmap, hping3, hydra, sshd, dnsmasq, iodine, dsniff, vsftpd, tcpdump, nftables, ethtool) through apt when missing (root)
	@missing=""; for t in $(LAB_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t##*:}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "lab tools missing:$$missing: install them with 'sudo apt-get install$$missing' (lab tests are skipped)"; \
	fi

demo: setup $(DEMO_WS)/history/sim/labels.csv $(DEMO_WS)/today/sim/labels.csv ## train on a simulated history, then inspect today's simulated traffic
	$(BIN)/netsentry run --config configs/demo-train.yaml
	@$(BIN)/netsentry run --config configs/demo-inspect.yaml; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 3 ] || exit $$rc
	@echo "report: $(DEMO_WS)/today/report.html (open it in a browser; it needs no network)"
	@echo "MLflow UI: $(BIN)/netsentry ui --tracking-uri sqlite:///$(DEMO_WS)/mlflow.db  → http://127.0.0.1:5000"

$(DEMO_WS)/history/sim/labels.csv: configs/scenarios/mixed.yaml | setup
	$(BIN)/netsentry simulate --scenario $< --out $(@D) --snaplen 256

$(DEMO_WS)/today/sim/labels.csv: configs/scenarios/demo.yaml | setup
	$(BIN)/netsentry simulate --scenario $< --out $(@D) --snaplen 256

$(DEMO_WS)/mlflow.db: | setup
	$(MAKE) demo

lab: setup lab-tools $(DEMO_WS)/mlflow.db ## (root) a 150 s lab run with real kernels and tools, inspected by the demo's champions
	$(BIN)/netsentry lab --scenario configs/lab/demo.yaml --out $(LAB_DIR)/run
	@$(BIN)/netsentry run $(LAB_DIR)/run -w $(LAB_DIR) --tenants $(LAB_DIR)/run/tenants.yaml --train never \
	  --tracking-uri sqlite:///$(DEMO_WS)/mlflow.db; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 3 ] || exit $$rc
	$(BIN)/python -m netsentry.pipeline.lab.verdicts $(LAB_DIR)/run $(LAB_DIR)

test: setup chromium lab-tools ## run the test suite
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup ## ruff
	$(BIN)/ruff check .

bench: setup ## capture + flows vs tshark/pyshark/dpkt, simulate vs scapy (prints ratios)
	$(BIN)/python -m bench.capture_flows
	$(BIN)/python -m bench.simulate

clean: ## remove the venv, workspaces and caches
	rm -rf $(VENV) workspace .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
