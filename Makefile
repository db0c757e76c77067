# `make demo` and `make test` are the README's two commands; both set up .venv first.
PY := .venv/bin/python

.venv/.installed: pyproject.toml constraints.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

setup: .venv/.installed

demo: setup
	$(PY) -m envs.demo

test: setup
	$(PY) -m pytest -q -n 2

bench: setup
	$(PY) bench/bench_env.py

.PHONY: setup demo test bench
