"""Functions the dependency tests send to workers (shipped by value)."""

from __future__ import annotations

import importlib
import json
import os.path

import numpy
import numpy as np


def uses_numpy(x: float) -> float:
    return float(np.sqrt(x))


def uses_numpy_chain(x: float) -> float:
    return float(numpy.linalg.norm([x, 0.0]))


def imports_inside(x: int) -> int:
    import json as js  # noqa: PLC0415

    return len(js.dumps(x))


def nested_import(x: int) -> int:
    def inner() -> int:
        import numpy.fft  # noqa: F401, PLC0415

        return x

    return inner()


def with_default(x: int, mod=np) -> int:  # type: ignore[no-untyped-def]
    return x


def make_closure():  # type: ignore[no-untyped-def]
    m = np

    def closure(x: int) -> int:
        return int(m.int64(x))

    return closure


class Model:
    def predict(self, x: float) -> float:
        return float(np.float64(x))


def needs_absent_package(x: int) -> int:
    import faasmp_test_absent_package  # type: ignore[import-not-found]  # noqa: F401, PLC0415

    return x


def dynamic_import(name: str) -> str:
    # Not visible to static analysis: the worker raises ModuleNotFoundError.
    return importlib.import_module(name).__name__


def only_stdlib(x: int) -> str:
    return json.dumps([x, os.path.sep])
