"""Libraries built on multiprocessing: joblib (scikit-learn's n_jobs), tqdm."""

from __future__ import annotations

import joblib
import pytest

import faasmp
from faasmp.joblib import FaasmpBackend
from tests import helpers


def test_joblib_backend_gives_the_same_results(ctx):
    expected = [helpers.square(i) for i in range(20)]
    with joblib.parallel_backend(FaasmpBackend(context=ctx), n_jobs=2):
        got = joblib.Parallel()(joblib.delayed(helpers.square)(i) for i in range(20))
    assert got == expected
    before = len(ctx.stats.records())
    with joblib.parallel_backend(FaasmpBackend(context=ctx), n_jobs=2):
        joblib.Parallel()(joblib.delayed(helpers.square)(i) for i in range(4))
    assert len(ctx.stats.records()) > before  # ran on faasmp workers


def test_joblib_backend_by_name_and_errors(default_ctx):
    import faasmp.joblib  # noqa: F401 - registers "faasmp"

    with joblib.parallel_backend("faasmp", n_jobs=2):
        with pytest.raises(KeyError, match="bad item 2"):
            joblib.Parallel()(joblib.delayed(helpers.fail_on)(i, 2) for i in range(4))
    with pytest.raises(ValueError, match="n_jobs == 0"):
        FaasmpBackend().effective_n_jobs(0)
    assert FaasmpBackend().effective_n_jobs(-1) >= 1


def test_gridsearchcv_through_joblib_matches_sequential(default_ctx):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    import faasmp.joblib  # noqa: F401

    features, labels = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1, 10], "gamma": ["scale", 0.1]}
    seq = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(features, labels)
    with joblib.parallel_backend("faasmp", n_jobs=2):
        par = GridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(features, labels)
    assert par.best_params_ == seq.best_params_
    assert par.cv_results_["mean_test_score"].tolist() == seq.cv_results_["mean_test_score"].tolist()


def test_tqdm_process_map_under_patch(default_ctx):
    from tqdm.contrib.concurrent import process_map

    with faasmp.patched():
        got = process_map(helpers.square, range(10), max_workers=2, chunksize=2, disable=True)
    assert got == [i * i for i in range(10)]


def test_joblib_default_backend_is_faasmp_while_patched(default_ctx):
    from joblib.parallel import get_active_backend

    with faasmp.patched():
        backend, _n_jobs = get_active_backend()
        assert isinstance(backend, FaasmpBackend)
        before = len(default_ctx.stats.records())
        got = joblib.Parallel(n_jobs=2)(joblib.delayed(helpers.square)(i) for i in range(6))
        assert got == [i * i for i in range(6)]
        assert len(default_ctx.stats.records()) > before  # ran on faasmp workers
    assert not isinstance(get_active_backend()[0], FaasmpBackend)  # loky again


def test_pandarallel_apply_and_map_under_patch(default_ctx):
    pd = pytest.importorskip("pandas")
    core = pytest.importorskip("pandarallel.core")

    stdlib_context = core.CONTEXT
    core.pandarallel.initialize(nb_workers=2, progress_bar=False, verbose=0, use_memory_fs=False)
    frame = pd.DataFrame({"a": range(200), "b": range(0, 400, 2)})
    with faasmp.patched():
        assert type(core.CONTEXT).__module__ == "faasmp.context"
        before = len(default_ctx.stats.records())
        rows = frame.parallel_apply(_as_main("lambda r: r.a * 3 + r.b"), axis=1)
        mapped = frame.a.parallel_map(_as_main("lambda x: x % 7"))
        assert len(default_ctx.stats.records()) > before
    assert rows.tolist() == (frame.a * 3 + frame.b).tolist()
    assert mapped.tolist() == (frame.a % 7).tolist()
    assert core.CONTEXT is stdlib_context


def _as_main(source: str):
    """A function defined in ``__main__``, as in a script or notebook.

    pandarallel pickles functions with dill, which sends a function of an
    importable module (this test module) by name; workers cannot import tests.
    """
    return eval(source, {"__name__": "__main__"})  # fixed test source
