# The two commands a new user runs (each does the set-up it needs first):
#   make transfer   the main job: demos on arm 0 -> train ACT -> evaluate arm 0 and mirrored arm 1
#   make test       the test suite (unit, integration over DDS, ruff)
SHELL := /bin/bash
PRESET ?= cpu
OUT ?= runs/transfer-$(PRESET)
ARGS ?=
RUN := set +u; source scripts/activate.sh; set -u;

.PHONY: setup transfer test lint bench clean

setup:
	@bash scripts/setup.sh

transfer: setup
	@$(RUN) MUJOCO_GL=egl act_transfer --preset $(PRESET) --out $(OUT) $(ARGS)

test: setup
	@$(RUN) MUJOCO_GL=egl python -m pytest -q $(ARGS)

lint: setup
	@$(RUN) ruff check .

bench: setup
	@$(RUN) MUJOCO_GL=egl python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf build install log
