# The two commands of README.md; each does its own set-up (scripts/setup.sh) first.
.PHONY: setup run test bench

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/cnnpipe run $(ARGS)

test: setup
	.venv/bin/python -m pytest $(PYTEST_ARGS)
