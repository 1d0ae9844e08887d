#!/usr/bin/env bash
# Optional: LeRobot 0.4.4's ACT in a venv of its own, for the peer area of `make bench`
# (benchmarks/bench_lerobot.py). The project never imports lerobot. The venv is separate, with the
# project's torch pinned by a constraints file, so that lerobot's caps (torch < 2.11) cannot
# change the torch the project measures; lerobot itself is installed --no-deps, plus only the
# packages its ACT import chain needs (lerobot >= 0.5 needs Python >= 3.12).
#
#   bash benchmarks/setup_lerobot.sh            # -> .venv-lerobot (or $LEROBOT_VENV)
#   LEROBOT_PYTHON=.venv-lerobot/bin/python make bench ARGS="--only lerobot"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=${LEROBOT_VENV:-$ROOT/.venv-lerobot}
PY=${PYTHON:-python3}
TORCH=$(grep -E '^torch==' "$ROOT/requirements.txt")
TV=$(grep -E '^torchvision==' "$ROOT/requirements.txt")
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
CONS="$VENV/constraints.txt"
printf '%s\n%s\n' "$TORCH" "$TV" > "$CONS"
pip() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip -c "$CONS" "$TORCH" "$TV"
pip --no-deps lerobot==0.4.4
# lerobot 0.4.4's own version caps, for what `lerobot.policies.act.modeling_act` imports
pip -c "$CONS" "draccus==0.10.0" "einops>=0.8.0,<0.9.0" "huggingface-hub>=0.34.2,<0.36.0" safetensors \
  "datasets>=4.0.0,<5.0.0" "accelerate>=1.10.0,<2.0.0" "imageio>=2.34.0,<3.0.0" "diffusers>=0.27.2,<0.36.0" \
  "deepdiff>=7.0.1,<9.0.0" "av>=15.0.0,<16.0.0" "jsonlines>=4.0.0,<5.0.0" "termcolor>=2.4.0,<4.0.0" \
  "packaging>=24.2,<26.0" "pyserial>=3.5,<4.0"
"$VENV/bin/python" -c "import torch, lerobot.policies.act.modeling_act; print('lerobot ACT ok, torch', torch.__version__)"
