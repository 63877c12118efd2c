"""The pattern examples (examples/patterns/*.py), loaded as modules for the tests.

They live outside the test package, under the project root, so faasmp's
dependency detection ships them to the workers by value like any project
module (no copy on the workers, no registration here).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PATTERNS = Path(__file__).resolve().parent.parent / "examples" / "patterns"


def load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PATTERNS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


map_pattern = load("map_pattern")
map_reduce = load("map_reduce")
bsp_shuffle = load("bsp_shuffle")
parameter_server = load("parameter_server")
