# The two commands of README.md; each does its own set-up (scripts/setup.sh) first.
.PHONY: setup run test test-fast lint bench

BENCHES = ingestion trainer_throughput first_fit beam_workers robustness attack_budget serving_load serving_memory tensor_protos pitfalls finetune seeds

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/cnnpipe run $(ARGS)

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The fast tier: unit and component tests on small data, no pipeline run (about 2 minutes; docs/benchmarks.md).
FAST_TESTS = tests/test_layers.py tests/test_models.py tests/test_preprocessing.py tests/test_signatures.py \
	tests/test_monitoring.py tests/test_warmup.py tests/test_readme.py tests/test_retrieval.py tests/test_warm_start.py \
	tests/test_trainer.py tests/test_ingestion.py tests/test_drift.py tests/test_cli.py tests/test_evaluation_key.py tests/tf_serving

test-fast: setup
	.venv/bin/python -m pytest $(FAST_TESTS) $(PYTEST_ARGS)

# ruff (pyproject.toml's [tool.ruff]) and the import contract (.importlinter); CI runs it before the tests.
lint: setup
	.venv/bin/ruff check --no-cache .
	.venv/bin/lint-imports

# Every benchmark with its defaults, one after the other, after `make run` (the serving and robustness benches
# use the model it pushes); on full data this takes an hour or more. Each prints its figures.
bench: run
	@for name in $(BENCHES); do echo "== bench/$$name.py"; .venv/bin/python bench/$$name.py || exit 1; done
