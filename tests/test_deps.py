"""Per-function dependency detection: project modules shipped by value, missing
packages reported before the job runs, worker-side import errors explained."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types

import pytest

from faasmp import deps
from faasmp.config import Config
from faasmp.deps import FAULT_MANIFEST_WITHOUT, MissingDependencyError, Requirement, RuntimeManifest
from tests import helpers_deps as h


def modules(func: types.FunctionType) -> set[str]:
    return deps.DependencyAnalyzer().modules_of(func)


# --- what a function needs (no workers) -------------------------------------


def test_global_module_alias_is_found():
    assert "numpy" in modules(h.uses_numpy)


def test_attribute_chain_of_a_global_module_is_found():
    found = modules(h.uses_numpy_chain)
    assert {"numpy", "numpy.linalg"} <= found


def test_import_inside_the_body_is_found():
    assert "json" in modules(h.imports_inside)


def test_import_in_a_nested_function_is_found():
    assert "numpy.fft" in modules(h.nested_import)


def test_default_argument_and_closure_cell_are_found():
    assert "numpy" in modules(h.with_default)
    assert "numpy" in modules(h.make_closure())


def test_pickling_a_class_instance_notes_its_methods():
    _, needs = deps.dumps_tracking(h.Model())
    assert any(r.top == "numpy" and r.needed_by.endswith("Model.predict") for r in needs)


def test_stdlib_only_function_has_no_requirements():
    _, needs = deps.dumps_tracking(h.only_stdlib)
    assert needs == []


def test_analysis_is_cached_per_function_object():
    analyzer = deps.DependencyAnalyzer()
    first = analyzer.note(h.uses_numpy)
    assert analyzer.note(h.uses_numpy) is first
    assert Requirement("numpy", "tests.helpers_deps.uses_numpy") in first


def test_relative_and_absolute_imports_in_the_body_resolve_against_the_package():
    source = (
        "def f():\n    from . import sibling\n    from .sub import thing\n"
        "    import json, os.path\n    x = 5\n    from ..up import y\n"
    )
    g: dict[str, object] = {"__package__": "pkg.inner", "__name__": "pkg.inner.mod"}
    exec(compile(source, "mod.py", "exec"), g)
    assert modules(g["f"]) == {"pkg.inner", "pkg.inner.sub", "json", "os.path", "pkg.up"}  # type: ignore[arg-type]


# --- project modules are shipped by value ------------------------------------


def test_project_module_is_registered_by_value(tmp_path, monkeypatch):
    (tmp_path / "proj_mod_a.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the current directory is the project
    mod = importlib.import_module("proj_mod_a")
    from cloudpickle import cloudpickle as cp

    assert deps.ANALYZER.kind("proj_mod_a") == deps.ModuleKind.PROJECT
    assert deps.ANALYZER.kind("numpy") == deps.ModuleKind.INSTALLED
    assert deps.ANALYZER.kind("json") == deps.ModuleKind.STDLIB
    deps.dumps_tracking(mod.triple)
    assert cp._is_registered_pickle_by_value(mod)


def test_project_module_runs_on_workers_without_a_copy(ctx, tmp_path, monkeypatch):
    (tmp_path / "proj_mod_b.py").write_text(
        "import numpy\n\ndef norm2(x):\n    return float(numpy.sqrt(x * x))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module("proj_mod_b")
    with ctx.Pool(1) as p:  # workers cannot import proj_mod_b (not on their path)
        assert p.map(mod.norm2, [3.0, -4.0]) == [3.0, 4.0]
        proc = ctx.Process(target=mod.norm2, args=(2.0,))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0


# --- missing packages: reported before the job runs --------------------------


def test_fault_restricted_manifest_reports_package_and_function_before_the_job(ctx, monkeypatch):
    monkeypatch.setenv(FAULT_MANIFEST_WITHOUT, "numpy")
    with ctx.Pool(1) as p:
        with pytest.raises(MissingDependencyError) as info:
            p.map(h.uses_numpy, [4.0])
        msg = str(info.value)
        assert "'numpy'" in msg and "uses_numpy" in msg and "pip install numpy" in msg
        assert "fault injected" in msg
        assert isinstance(info.value, ModuleNotFoundError)
        proc = ctx.Process(target=h.uses_numpy_chain, args=(1.0,))
        with pytest.raises(MissingDependencyError, match="uses_numpy_chain"):
            proc.start()
        monkeypatch.delenv(FAULT_MANIFEST_WITHOUT)
        assert p.map(h.uses_numpy, [4.0]) == [2.0]  # the pool is fine once the package is there


def test_package_absent_everywhere_is_reported_before_the_job(ctx):
    with ctx.Pool(1) as p:
        with pytest.raises(MissingDependencyError, match="needs_absent_package") as info:
            p.apply(h.needs_absent_package, (1,))
        assert "faasmp_test_absent_package" in str(info.value)
        assert "not installed here either" in str(info.value)


def test_cloud_remedy_names_the_lithops_runtime_build_command():
    manifest = RuntimeManifest(
        backend="aws_lambda",
        runtime="faasmp-runtime:1",
        python="3.11.7",
        versions={},
        distributions={},
        modules=frozenset({"json", "cloudpickle"}),
    )
    lacking = deps.missing([Requirement("numpy.linalg", "train")], manifest)
    msg = deps.missing_message(lacking, manifest, "function train")
    assert "train needs package 'numpy'" in msg
    assert "lithops runtime build -b aws_lambda" in msg and "deploy/Dockerfile" in msg


def test_cloud_manifest_is_read_from_the_cache_without_invoking(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cfg = Config(backend="aws_lambda", redis_url="rediss://:pw@redis.example.com:6380/0")
    seeded = RuntimeManifest(  # a seeded cache file: what one Lithops call would have stored
        backend="aws_lambda",
        runtime=deps.runtime_name(cfg),
        python="3.11.7",
        versions={"faasmp": "0.1.0"},
        distributions={"cloudpickle": "3.1.2"},
        modules=frozenset({"cloudpickle", "json"}),
    )
    path = deps._cache_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(seeded.to_json())
    assert deps.manifest_for(cfg) == seeded
    with pytest.raises(MissingDependencyError, match="lithops runtime build -b aws_lambda"):
        deps.check([Requirement("numpy", "f")], "function f", config=cfg)
    deps.check([Requirement("cloudpickle", "f")], "function f", config=cfg)  # present: no error


def test_manifest_round_trips_through_json():
    m = deps.collect_manifest("localhost", "here")
    again = RuntimeManifest.from_json(m.to_json())
    assert again == m and "numpy" in again.modules and again.versions["faasmp"]


# --- import errors on the worker ---------------------------------------------


def test_worker_side_import_error_names_package_function_and_remedy(ctx):
    with ctx.Pool(1) as p:
        with pytest.raises(ModuleNotFoundError) as info:
            p.apply(h.dynamic_import, ("faasmp_test_dynamic_absent",))
    err = info.value
    assert isinstance(err, MissingDependencyError)
    msg = str(err)
    assert "dynamic_import" in msg and "faasmp_test_dynamic_absent" in msg and "pip install" in msg
    assert err.needed_by == "dynamic_import"
    assert "Traceback" in str(err.__cause__)  # the remote traceback is still attached


def test_explain_keeps_the_type_of_a_wrapping_error():
    err = RuntimeError("the worker could not load the task's function: ModuleNotFoundError(...)")
    chain = "ModuleNotFoundError: No module named 'clientonly_x'\n"
    out = deps.explain_remote_import_error(err, [], chain)
    assert out is err and "clientonly_x" in str(out) and "while the worker unpickled it" in str(out)


def test_unrelated_errors_are_untouched():
    err = ValueError("bad")
    assert deps.explain_remote_import_error(err, [], "") is err and str(err) == "bad"


def test_requirement_top_and_dataclass_are_frozen():
    r = Requirement("a.b.c", "f")
    assert r.top == "a"
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.module = "x"  # type: ignore[misc]
    assert "numpy" in sys.modules
