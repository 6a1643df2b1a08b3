# cnn_perception: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
ENV := source scripts/env.sh &&
PYTEST_ARGS ?=

.PHONY: setup demo test lint pytest bench soak pi-check clean

setup:  ## build .venv/ (without a ROS install) and install/ (colcon); idempotent
	@bash scripts/setup.sh

demo: setup  ## the full pipeline on an embedded sample flight -> demo_output/
	@$(ENV) python -m cnn_perception demo --out demo_output

test: setup  ## setup + lint + the whole pytest suite
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory pytest

pytest:
	@$(ENV) python -m pytest cnn_perception/test $(PYTEST_ARGS)

lint:
	@$(ENV) ruff check cnn_perception && ruff format --check cnn_perception && echo 'lint: ok'

bench: setup  ## performance figures -> docs/benchmarks.md
	@$(ENV) python -m cnn_perception bench --out docs/benchmarks.md

soak: setup  ## 10 minutes of all four nodes above capacity -> docs/reliability.md
	@$(ENV) python -m cnn_perception soak --duration 600 --out docs/reliability.md

pi-check: setup  ## the Pi's robot path on arm64 (qemu-user) vs x86-64 -> docs/pi_check.md
	@bash scripts/pi_check.sh

clean:
	rm -rf build install log
