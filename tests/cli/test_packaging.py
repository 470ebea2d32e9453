"""The package as a user installs it.

- `python -m build` on the files of a clean clone makes an sdist and a wheel that hold every file of the package
  folder: the configs, the data, the `evaluate` metric script and its card;
- the wheel, installed in a fresh venv (CPU torch 2.13.0 first, as scripts/setup.sh does), runs `zppo-trl --help` and
  a one-step tiny run of the built-in config from a folder outside the source tree;
- `import zppo_trl` and a non-quantised run print no bitsandbytes line and make no network request, with the optional
  `kernels` package present or absent, on a CPU that bitsandbytes takes for one with AVX512-BF16 (where its import
  asks `kernels` for a Hub kernel); and the default config names no deprecated TrainingArguments field.

The installs use pip's cache; nothing comes from the Hugging Face Hub.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

import pytest
from paths import ROOT

from zppo_trl import __version__ as VERSION
from zppo_trl.tiny import build_tiny_llama

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}
# a one-step run of the built-in CPU demo config on the tiny model (the config's LoRA targets exist in its Llama)
TINY_RUN = ["--max_steps", "1", "--max_completion_length", "8", "--report_to", "none"]
DEPRECATED_CONFIG_NAME = "`gradient_checkpointing` is deprecated"  # transformers' warning for the old field name


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **OFFLINE, **extra}


def run(command: list[str], cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


def checkout_files() -> list[str]:
    """The files a clean clone would have once the work tree is committed: tracked, plus untracked but not ignored."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell which files a clean clone has")
    return [f for f in listed if f and os.path.isfile(os.path.join(ROOT, f))]


def package_files() -> list[str]:
    return [f for f in checkout_files() if f.startswith("zppo_trl/")]


def bitsandbytes_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r"bitsandbytes|gemm_4bit|kernels-community", line)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`(sdist, wheel, seconds)`: `python -m build` (sdist, then the wheel from the sdist) on a copy of the checkout's
    files. --no-isolation builds with this environment's setuptools instead of downloading one."""
    source = tmp_path_factory.mktemp("clean_clone")
    for name in checkout_files():
        os.makedirs(os.path.join(source, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), os.path.join(source, name))
    start = time.perf_counter()
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", "dist", "."], cwd=source)
    seconds = time.perf_counter() - start
    return (
        source / "dist" / f"zppo_trl-{VERSION}.tar.gz",
        source / "dist" / f"zppo_trl-{VERSION}-py3-none-any.whl",
        seconds,
    )


def test_sdist_and_wheel_hold_every_file_of_the_package(built):
    sdist, wheel, seconds = built
    files = package_files()
    shipped_data = {"zppo_trl/configs/cpu_demo.yaml", "zppo_trl/data/tiny_math.jsonl",
                    "zppo_trl/evaluate_metrics/answer_accuracy/answer_accuracy.py",
                    "zppo_trl/evaluate_metrics/answer_accuracy/README.md"}  # fmt: skip
    # the example configs the CLI's help names (`zppo-trl train --config NAME`)
    shipped_data |= {f"zppo_trl/configs/{name}" for name in os.listdir(os.path.join(ROOT, "examples", "configs"))}
    assert shipped_data <= set(files)
    with zipfile.ZipFile(wheel) as whl:
        in_wheel = set(whl.namelist())
        metadata = whl.read(f"zppo_trl-{VERSION}.dist-info/METADATA").decode()
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert [f for f in files if f not in in_wheel] == []
    assert [f for f in files if f not in in_sdist] == []
    requires = re.findall(r"^Requires-Dist: ([\w-]+)(.*)$", metadata, flags=re.M)
    core = {name: spec for name, spec in requires if "extra ==" not in spec}
    assert {"evaluate", "bitsandbytes", "trl", "transformers", "peft", "accelerate", "datasets"} <= core.keys()
    assert {"build", "twine"} <= {name for name, spec in requires if 'extra == "test"' in spec}
    assert re.search(r"^Project-URL: Paper, https://arxiv.org/abs/2606.18216$", metadata, flags=re.M)
    print(f"python -m build: {seconds:.1f} s")


def test_twine_accepts_the_sdist_and_the_wheel(built):
    """What PyPI checks on upload: the metadata and that the long description (README.md) renders."""
    sdist, wheel, _ = built
    done = run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], cwd=sdist.parent)
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_vllm_extra_is_trls_range_and_tensorboard_configs_name_their_extra(built):
    """vLLM within TRL 1.16's supported range (a newer one would replace torch), read from TRL's own metadata; an
    example config that logs to TensorBoard names the extra that installs it."""
    from importlib.metadata import requires

    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as whl:
        metadata = whl.read(f"zppo_trl-{VERSION}.dist-info/METADATA").decode()
    ours = re.findall(r'^Requires-Dist: vllm([^;]*); extra == "vllm"$', metadata, flags=re.M)
    trls = [r.split(";")[0].removeprefix("vllm") for r in requires("trl") if re.match(r"vllm\b", r)]
    spec = lambda text: sorted(part.strip() for part in text.strip().strip("()").split(","))
    assert ours and [spec(x) for x in ours] == [spec(x) for x in trls] and any("<" in x for x in ours)
    assert re.search(r'^Requires-Dist: tensorboard[^;]*; extra == "tensorboard"$', metadata, flags=re.M)
    for name in os.listdir(os.path.join(ROOT, "examples", "configs")):
        text = open(os.path.join(ROOT, "examples", "configs", name)).read()
        if re.search(r"^report_to:.*tensorboard", text, flags=re.M):
            assert "zppo-trl[tensorboard]" in text, f"{name} logs to TensorBoard without naming the extra"


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_help_and_a_one_step_run(built, tmp_path, tokenizer):
    _, wheel, _ = built
    venv = tmp_path / "venv"
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    cli = str(python.parent / "zppo-trl")
    timings = {}
    start = time.perf_counter()
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    # this environment's pip installs into the new venv (pip --python); --no-compile: the first import writes the
    # bytecode of the modules it uses, far fewer than all of torch's and transformers'
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile"]
    run([*pip, "torch==2.13.0"], cwd=tmp_path)  # the CPU build first, as scripts/setup.sh does
    timings["venv + torch"] = time.perf_counter() - start
    run([*pip, str(wheel)], cwd=tmp_path)
    timings["wheel + dependencies"] = time.perf_counter() - start - timings["venv + torch"]

    work = tmp_path / "elsewhere"  # not the source tree: only the installed package can be imported
    build_tiny_llama(tokenizer).save_pretrained(work / "tiny")
    tokenizer.save_pretrained(work / "tiny")
    env = clean_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # see --no-compile
    start = time.perf_counter()
    shown = run([cli, "--help"], cwd=work, env=env).stdout
    assert "zppo-trl train" in shown
    config = re.search(r"Built-in CPU demo config: (\S+)", shown).group(1)
    assert config.startswith(str(venv)) and os.path.isfile(config)  # the installed package's own file
    done = run([cli, "train", "--config", config, "--model_name_or_path", "tiny", "--output_dir", "run", *TINY_RUN],
               cwd=work, env=env)  # fmt: skip
    timings["help + one-step run"] = time.perf_counter() - start
    assert "[zppo] model/adapter saved to run" in done.stdout
    assert (work / "run" / "adapter_model.safetensors").exists()
    assert json.loads((work / "run" / "zppo_buffer_state.json").read_text())["payload"]["round"] == 1
    assert bitsandbytes_lines(done.stderr) == [] and DEPRECATED_CONFIG_NAME not in done.stderr
    print(", ".join(f"{name}: {seconds:.0f} s" for name, seconds in timings.items()))


# --------------------------------------------------------------------------------------------------------------------
# a quiet, offline import and run, with or without `kernels`

PRETEND_AVX512_BF16 = '''
import importlib.abc, importlib.machinery, json, os, socket, sys

class PretendAvx512Bf16(importlib.abc.MetaPathFinder):
    """bitsandbytes.functional.has_avx512bf16() returns True: its CPU backend then asks `kernels` at import."""
    def find_spec(self, name, path, target=None):
        if name != "bitsandbytes.functional":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module
        def exec_module(module):
            load(module)
            module.has_avx512bf16 = lambda: True
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PretendAvx512Bf16())

attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[-1] if args else kwargs)[:200])
    raise OSError("network disabled by the test")
socket.socket.connect = socket.socket.connect_ex = lambda self, *args: refuse(self, *args)
socket.getaddrinfo = refuse
'''

# what `kernels.get_kernel` does first: ask the Hub (and the call is recorded). In front of a real `kernels`, the rest
# of its API comes from that one: transformers imports it whole (`hub_kernels.py`) once it counts `kernels` installed
FAKE_KERNELS = """
import importlib.machinery, os, socket, sys
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_real = importlib.machinery.PathFinder.find_spec("kernels", [p for p in sys.path if os.path.abspath(p or ".") != _here])
if _real is not None and _real.origin:
    __path__.extend(_real.submodule_search_locations)  # its submodules import as kernels.*
    exec(compile(open(_real.origin).read(), _real.origin, "exec"), globals())
def get_kernel(repo_id, **kwargs):
    with open(os.environ["KERNEL_CALLS"], "a") as f:
        f.write(repo_id + "\\n")
    socket.create_connection(("huggingface.co", 443), timeout=5)
"""

IMPORT_AND_RUN = """
import zppo_trl
from zppo_trl.cli import builtin_config_path, main
from zppo_trl.tiny import build_char_tokenizer, build_tiny_llama
tokenizer = build_char_tokenizer()
build_tiny_llama(tokenizer).save_pretrained("tiny")
tokenizer.save_pretrained("tiny")
code = main(["train", "--config", builtin_config_path(), "--model_name_or_path", "tiny", "--output_dir", "run",
             *json.loads(os.environ["TINY_RUN"])])
print("NETWORK " + json.dumps(attempts))
sys.exit(code)
"""


def guarded_python(tmp_path, kernels: str, body: str):
    """Run `body` after the guard above, online as far as the libraries can tell (no HF_HUB_OFFLINE): any request
    would be made, and is recorded instead. Returns (process, repo ids asked of `kernels`, network attempts).

    HF_HUB_DISABLE_TELEMETRY stays set: TRL's trainers send a usage ping to the Hub when they are built, unless it,
    HF_HUB_OFFLINE or CI is set; that is TRL's own documented behaviour, the same for GRPOTrainer."""
    (tmp_path / "fake" / "kernels").mkdir(parents=True)
    (tmp_path / "fake" / "kernels" / "__init__.py").write_text(FAKE_KERNELS)
    calls = tmp_path / "kernel_calls.txt"
    calls.touch()
    env = clean_env(KERNEL_CALLS=str(calls), TINY_RUN=json.dumps(TINY_RUN))
    env.pop("HF_HUB_OFFLINE")
    if kernels == "present":  # a stand-in, also in front of a real `kernels`
        env["PYTHONPATH"] = str(tmp_path / "fake")
    elif importlib.util.find_spec("kernels") is not None:
        pytest.skip("`kernels` is installed here: its absence cannot be tested")
    body += '\nprint("NETWORK " + json.dumps(attempts))' if "NETWORK" not in body else ""
    done = subprocess.run([sys.executable, "-c", PRETEND_AVX512_BF16 + body], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    attempts = json.loads(re.search(r"^NETWORK (.*)$", done.stdout, flags=re.M).group(1))
    return done, calls.read_text().split(), attempts


def test_the_guard_sees_what_bitsandbytes_does_alone(tmp_path):
    """Control: without zppo_trl, importing bitsandbytes with `kernels` present asks the Hub (so the test below would
    see it), and without `kernels` it logs the line zppo_trl drops."""
    done, calls, attempts = guarded_python(tmp_path, "present", "import bitsandbytes")
    assert calls == ["kernels-community/quantization-bitsandbytes"] and len(attempts) == 1
    done, calls, attempts = guarded_python(tmp_path / "absent", "absent", "import bitsandbytes")
    assert calls == [] and attempts == [] and "Failed to load CPU gemm_4bit_forward" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["present", "absent"])
def test_import_and_a_default_tiny_run_are_quiet_and_offline(tmp_path, kernels):
    done, calls, attempts = guarded_python(tmp_path, kernels, IMPORT_AND_RUN)
    assert "[zppo] model/adapter saved to run" in done.stdout
    assert calls == [] and attempts == []
    assert bitsandbytes_lines(done.stderr) == []
    assert DEPRECATED_CONFIG_NAME not in done.stderr  # the built-in config uses the current names
