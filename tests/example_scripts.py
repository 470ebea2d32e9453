"""The scripts under examples/ as modules, for tests of their pieces (they are scripts, not part of the package)."""

import importlib.util
import os
import sys

from paths import EXAMPLES


def script_path(name: str) -> str:
    return os.path.join(EXAMPLES, f"{name}.py")


def load_example(name: str):
    """Import examples/NAME.py under the module name NAME."""
    spec = importlib.util.spec_from_file_location(name, script_path(name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first, as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
