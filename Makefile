# `make demo` and `make test` are the README's two commands; both set up .venv first.
PY := .venv/bin/python

.venv/.installed: pyproject.toml constraints.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

setup: .venv/.installed

# `make demo`: every policy against the hindsight optimum on a few table1 seeds (README, "Evaluate").
# The shipped PPO agent joins as soon as its checkpoint exists. Override e.g. DEMO_SEEDS=1000-1099.
comma := ,
DEMO_AGENT := agents/checkpoints/table1__CrossBorderDispatch-v0
DEMO_SEEDS ?= 1000-1005
DEMO_OUT ?= results/demo
DEMO_POLICIES ?= $(if $(wildcard $(DEMO_AGENT)/policy.safetensors),ppo=$(DEMO_AGENT)$(comma))rolling-milp,greedy,base-stock,random
DEMO_TIME_LIMIT ?= 30# seconds per hindsight solve: table1 is not always proven optimal that fast on 2 busy cores

demo: setup
	$(PY) evaluate.py --scenario table1 --policies $(DEMO_POLICIES) --seeds $(DEMO_SEEDS) --workers 2 --time-limit $(DEMO_TIME_LIMIT) --out $(DEMO_OUT)

test: setup
	$(PY) -m pytest -q -n 2

bench: setup
	$(PY) bench/bench_env.py

.PHONY: setup demo test bench
