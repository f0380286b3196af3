# The two commands of README.md; each does its own set-up (scripts/setup.sh) first.
.PHONY: setup run test lint bench

BENCHES = ingestion trainer_throughput first_fit beam_workers robustness serving_load serving_memory tensor_protos pitfalls finetune

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/cnnpipe run $(ARGS)

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# ruff (pyproject.toml's [tool.ruff]) and the import contract (.importlinter); CI runs it before the tests.
lint: setup
	.venv/bin/ruff check --no-cache .
	.venv/bin/lint-imports

# Every benchmark with its defaults, one after the other, after `make run` (the serving and robustness benches
# use the model it pushes); on full data this takes an hour or more. Each prints its figures.
bench: run
	@for name in $(BENCHES); do echo "== bench/$$name.py"; .venv/bin/python bench/$$name.py || exit 1; done
