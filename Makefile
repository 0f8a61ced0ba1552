# The two set-up commands of the README. Each creates .venv on a fresh machine (Python >= 3.10 and
# pip are all it needs) and reinstalls only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run readme test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev,agents]"
	touch $@ $(VENV)/.installed-run

# The main job: every baseline on the quick suite, printed and written to results/ (index.html).
# --resume: a second `make run` keeps the finished episodes and only reports again.
run: $(VENV)/.installed-run
	$(BIN)/schedgym leaderboard --suite quick --out results --workers 2 --resume

# Rewrite README.md's generated quick-suite table from the rows in results/.
readme: $(VENV)/.installed-run
	$(BIN)/schedgym leaderboard --suite quick --out results --workers 2 --resume --readme README.md

test: $(VENV)/.installed-test
	WANDB_MODE=disabled MPLBACKEND=Agg $(BIN)/python -m pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check schedgym tests benchmarks notebooks
	$(BIN)/ruff format --check schedgym tests benchmarks notebooks
	$(BIN)/mypy

bench: $(VENV)/.installed-run
	$(BIN)/python benchmarks/bench_envs.py
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
