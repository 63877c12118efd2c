"""faasmp.storage against the real Lithops localhost storage, locally and from workers."""

from __future__ import annotations

import builtins
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

import faasmp.storage as fs
from tests import helpers_storage as hs
from tests.conftest import skip_if_isolated

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> str:
    """A fresh, existing storage directory per test (its own key prefix)."""
    path = f"/faastest-{uuid.uuid4().hex[:10]}"
    fs.makedirs(path)
    return path


@pytest.fixture
def routed(root: str):
    with fs.patched(root + "/"):
        yield root


# --- files ---------------------------------------------------------------------


def test_text_write_read_append_readline_iteration_seek_tell(root):
    path = f"{root}/notes.txt"
    with fs.open(path, "w") as f:
        assert f.write("first\nsecond\n") == 13
        assert f.tell() == 13
        assert f.name == path and f.mode == "w" and not f.readable() and f.writable()
    with fs.open(path, "a") as f:
        print("third", file=f)
    with fs.open(path) as f:
        assert f.readline() == "first\n"
        assert list(f) == ["second\n", "third\n"]
        assert f.readline() == ""
        f.seek(0)
        assert f.read(5) == "first"
    with fs.open(path, "r+") as f:
        f.seek(0)
        f.write("FIRST")
        f.seek(0)
        assert f.readline() == "FIRST\n"
    assert fs.open(path).read() == "FIRST\nsecond\nthird\n"
    assert fs.getsize(path) == 19
    with fs.open(path, "w") as f:  # w truncates
        f.write("x")
    assert fs.open(path).read() == "x"


def test_encoding_errors_and_newline_like_the_builtin(root, tmp_path):
    text = "caf\u00e9 \u20ac\nline2\r\nline3\rend"
    cases = [
        {"encoding": "utf-8"},
        {"encoding": "latin-1", "errors": "replace"},
        {"encoding": "utf-16"},
        {"encoding": "utf-8", "newline": ""},
        {"encoding": "utf-8", "newline": "\r\n"},
    ]
    for i, kw in enumerate(cases):
        local, remote = tmp_path / f"f{i}", f"{root}/f{i}"
        with builtins.open(local, "w", **kw) as f:
            f.write(text)
        with fs.open(remote, "w", **kw) as f:
            f.write(text)
        assert fs.open(remote, "rb").read() == local.read_bytes(), kw
        for newline in (None, "", "\n"):
            rkw = {**kw, "newline": newline}
            with builtins.open(local, **rkw) as a, fs.open(remote, **rkw) as b:
                assert b.readlines() == a.readlines(), rkw


def test_binary_modes_and_seek(root, monkeypatch):
    path = f"{root}/blob.bin"
    data = bytes(range(256)) * 40  # 10240 bytes
    with fs.open(path, "wb") as f:
        f.write(data[:5000])
        f.write(memoryview(data)[5000:])
    with fs.open(path, "ab") as f:
        f.write(b"tail")
        f.seek(0)
        f.write(b"!")  # append mode writes at the end whatever the position
    monkeypatch.setattr(fs, "READ_BLOCK", 1000)  # reads cross many blocks
    with fs.open(path, "rb") as f:
        assert f.read(3) == data[:3]
        f.seek(-5, io.SEEK_END)
        assert f.read() == b"tail!"
        f.seek(2500)
        assert f.read(2000) == data[2500:4500]
        assert f.tell() == 4500
        f.seek(10, io.SEEK_CUR)
        assert f.read(1) == data[4510:4511]
        f.seek(0)
        assert f.read() == data + b"tail!"
    with fs.open(path, "r+b") as f:
        f.seek(1)
        f.write(b"XY")
        f.seek(0)
        assert f.read(4) == data[:1] + b"XY" + data[3:4]
        f.truncate(4)
    assert fs.open(path, "rb").read() == data[:1] + b"XY" + data[3:4]
    with fs.open(path, "rb", buffering=0) as raw:
        assert raw.read(2) == data[:1] + b"X"


def test_flush_makes_a_file_visible_before_close(root):
    path = f"{root}/live.txt"
    f = fs.open(path, "w")
    f.write("partial")
    assert not fs.exists(path)  # object storage: nothing before the first flush
    f.flush()
    assert fs.open(path).read() == "partial"
    f.write(" more")
    f.close()
    assert fs.open(path).read() == "partial more"
    with pytest.raises(ValueError, match="closed"):
        f.write("x")


def test_os_like_errors(root):
    fs.makedirs(f"{root}/d")
    with fs.open(f"{root}/d/f", "w") as f:
        f.write("1")
    with pytest.raises(FileNotFoundError) as info:
        fs.open(f"{root}/missing")
    assert info.value.errno == 2 and info.value.filename == f"{root}/missing"
    with pytest.raises(FileNotFoundError):
        fs.open(f"{root}/no-such-dir/f", "w")
    with pytest.raises(NotADirectoryError):
        fs.open(f"{root}/d/f/child", "w")
    with pytest.raises(IsADirectoryError):
        fs.open(f"{root}/d")
    with pytest.raises(IsADirectoryError):
        fs.open(f"{root}/d", "w")
    with pytest.raises(FileExistsError):
        fs.open(f"{root}/d/f", "x")
    with pytest.raises(FileNotFoundError):
        fs.open(f"{root}/d/nope", "r+")
    with pytest.raises(io.UnsupportedOperation):
        fs.open(f"{root}/d/f", "a").read()
    with pytest.raises(io.UnsupportedOperation):
        fs.open(f"{root}/d/f", "rb").write(b"x")
    for bad, msg in [
        ("rw", "exactly one"),
        ("rr", "invalid mode"),
        ("rbt", "text and binary"),
        ("q", "invalid"),
    ]:
        with pytest.raises(ValueError, match=msg):
            fs.open(f"{root}/d/f", bad)
    with pytest.raises(ValueError, match="encoding"):
        fs.open(f"{root}/d/f", "rb", encoding="utf-8")
    with pytest.raises(FileNotFoundError):
        fs.remove(f"{root}/d/nope")
    with pytest.raises(IsADirectoryError):
        fs.remove(f"{root}/d")
    with pytest.raises(FileNotFoundError):
        fs.listdir(f"{root}/nope")
    with pytest.raises(NotADirectoryError):
        fs.listdir(f"{root}/d/f")
    with pytest.raises(FileNotFoundError):
        fs.getsize(f"{root}/nope")
    with pytest.raises(FileExistsError):
        fs.makedirs(f"{root}/d")
    with pytest.raises(FileExistsError):
        fs.makedirs(f"{root}/d/f", exist_ok=True)  # a file is in the way, as on a disk
    with pytest.raises(NotADirectoryError):
        fs.makedirs(f"{root}/d/f/sub")
    with pytest.raises(TypeError, match=r"str or os\.PathLike"):
        fs.exists(3)


def test_directories_listdir_walk_remove(root):
    fs.makedirs(f"{root}/a/b/c")
    fs.makedirs(f"{root}/a/b", exist_ok=True)
    fs.makedirs(f"{root}/empty")
    for name in ("a/1.txt", "a/b/2.txt", "a/b/c/3.txt", "top.txt", ".hidden"):
        with fs.open(f"{root}/{name}", "w") as f:
            f.write(name)
    assert fs.listdir(root) == [".hidden", "a", "empty", "top.txt"]
    assert fs.listdir(f"{root}/empty") == []
    assert fs.isdir(f"{root}/a/b") and not fs.isfile(f"{root}/a/b")
    assert fs.isfile(f"{root}/a/1.txt") and fs.getsize(f"{root}/a/1.txt") == 7
    assert fs.getsize(f"{root}/a") == 0
    assert not fs.exists(f"{root}/a/zz") and not fs.isdir(f"{root}/a/1.txt")
    assert list(fs.walk(root)) == [
        (root, ["a", "empty"], [".hidden", "top.txt"]),
        (f"{root}/a", ["b"], ["1.txt"]),
        (f"{root}/a/b", ["c"], ["2.txt"]),
        (f"{root}/a/b/c", [], ["3.txt"]),
        (f"{root}/empty", [], []),
    ]
    bottom_up = [d for d, _, _ in fs.walk(root, topdown=False)]
    assert bottom_up == [f"{root}/a/b/c", f"{root}/a/b", f"{root}/a", f"{root}/empty", root]
    pruned = []
    for d, dirs, _files in fs.walk(root):
        pruned.append(d)
        dirs[:] = [x for x in dirs if x != "b"]
    assert pruned == [root, f"{root}/a", f"{root}/empty"]
    errors: list[OSError] = []
    assert list(fs.walk(f"{root}/nope", onerror=errors.append)) == []
    assert isinstance(errors[0], FileNotFoundError)
    # removing the last file keeps its directory, as on a disk
    fs.remove(f"{root}/a/b/c/3.txt")
    assert fs.isdir(f"{root}/a/b/c") and fs.listdir(f"{root}/a/b/c") == []
    # a directory implied only by keys (objects written by another tool) is one too
    loc = fs._router.locate(f"{root}/implied/x/y.txt")
    loc.store.put(loc.bucket, loc.key, b"from elsewhere")
    assert fs.isdir(f"{root}/implied") and fs.listdir(f"{root}/implied") == ["x"]
    assert fs.open(f"{root}/implied/x/y.txt").read() == "from elsewhere"


def test_url_paths_name_a_bucket(root):
    bucket = f"faasmp-test-{uuid.uuid4().hex[:8]}"
    fs.makedirs(f"s3://{bucket}/in")
    with fs.open(f"s3://{bucket}/in/x.txt", "w") as f:
        f.write("in a bucket")
    assert fs.listdir(f"s3://{bucket}/") == ["in"]
    assert fs.listdir(f"s3://{bucket}/in/") == ["x.txt"]
    assert fs.open(f"s3://{bucket}/in/../in/x.txt").read() == "in a bucket"
    with fs.patched(f"s3://{bucket}/"):
        assert os.path.exists(f"s3://{bucket}/in/x.txt")
        assert not os.path.exists(f"s3://other-{bucket}/in/x.txt")  # another bucket is not routed
        assert [f for _d, _s, files in os.walk(f"s3://{bucket}") for f in files] == ["x.txt"]


# --- routing the built-ins ----------------------------------------------------------


def test_patched_routes_only_the_prefix(root, tmp_path):
    local = tmp_path / "local.txt"
    originals = (builtins.open, os.path.exists, os.listdir, os.walk)
    with fs.patched(root + "/"):
        assert fs.patched_prefixes() == (root,)
        os.makedirs(f"{root}/out/deep")
        with open(f"{root}/out/r.txt", "w") as f:
            f.write("remote")
        with open(local, "w") as f:  # the local disk is untouched
            f.write("local")
        assert os.path.exists(f"{root}/out/r.txt") and os.path.isfile(f"{root}/out/r.txt")
        assert not os.path.exists(f"{root}x/out/r.txt")  # a sibling of the prefix is local
        assert os.path.isdir(root) and os.listdir(f"{root}/out") == ["deep", "r.txt"]
        assert os.path.getsize(f"{root}/out/r.txt") == 6
        assert os.listdir(tmp_path) == ["local.txt"]
        assert os.path.isdir(tmp_path) and os.path.getsize(local) == 5
        assert [f for _d, _s, files in os.walk(root) for f in files] == ["r.txt"]
        assert open(pathlib.PurePosixPath(root, "out", "r.txt")).read() == "remote"
        with io.open(f"{root}/out/r.txt", "rb") as f:  # noqa: UP020 - io.open is routed too
            assert f.read() == b"remote"
        os.remove(f"{root}/out/r.txt")
        os.unlink(local)
        assert not os.path.exists(local)
        with pytest.raises(FileNotFoundError):
            open(f"{root}/out/r.txt")
        with fs.patched("/faas-nested/"):
            assert fs.patched_prefixes() == (root, "/faas-nested")
        assert fs.patched_prefixes() == (root,)
    assert (builtins.open, os.path.exists, os.listdir, os.walk) == originals
    assert not os.path.exists(f"{root}/out")  # the local disk has no such path
    assert fs.isdir(f"{root}/out/deep")  # but storage keeps it


def test_prefix_validation():
    for bad in ("/", "relative/dir", ""):
        with pytest.raises(ValueError, match="prefix"):
            fs.patch(bad)
    with pytest.raises(ValueError, match="at least one prefix"):
        fs.patch()
    assert fs.patched_prefixes() == ()


# --- from remote code -------------------------------------------------------------------

_CLIENT_STORAGE = (
    "the routing uses the default context's localhost storage, which isolated workers refuse "
    "(tests/test_isolation.py checks the refusal and Redis storage across the sandbox)"
)


def test_pool_workers_see_the_same_routing(ctx, routed):
    skip_if_isolated(ctx, _CLIENT_STORAGE)
    os.makedirs(f"{routed}/parts")
    with ctx.Pool(2) as pool:
        names = pool.map(hs.write_numbered, [(f"{routed}/parts", i) for i in range(6)])
        assert names == [f"part-{i:02d}.txt" for i in range(6)]
        assert sorted(os.listdir(f"{routed}/parts")) == names
        assert [int(open(f"{routed}/parts/{n}").read()) for n in names] == [i * i for i in range(6)]
        facts = pool.apply(hs.facts, (f"{routed}/parts",))
        assert facts == {
            "exists": True,
            "isdir": True,
            "isfile": False,
            "listdir": names,
            "walk_files": names,
        }
        assert pool.apply(hs.missing_error, (f"{routed}/nope",)) == "FileNotFoundError 2"
        pool.map(hs.append_line, [(f"{routed}/log.txt", "a")])
        pool.map(hs.append_line, [(f"{routed}/log.txt", "b")])
    assert open(f"{routed}/log.txt").read() == "a\nb\n"


def test_processes_see_the_same_routing_and_unpatched_workers_do_not(ctx, root):
    skip_if_isolated(ctx, _CLIENT_STORAGE)
    with fs.patched(root + "/"):
        p = ctx.Process(target=hs.write_text, args=(f"{root}/from-process.txt", "hi from a process"))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert open(f"{root}/from-process.txt").read() == "hi from a process"
    # Outside the block the same worker slots use their local disk again.
    with ctx.Pool(1) as pool:
        assert pool.apply(hs.facts, (f"{root}",))["exists"] is False
    assert fs.open(f"{root}/from-process.txt").read() == "hi from a process"


def test_faasmp_run_storage_flag(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os, sys

            def work(i):
                with open(f"/faas-run/out/{i}.txt", "w") as f:
                    f.write(str(i * 10))
                return os.path.exists(f"/faas-run/out/{i}.txt")

            if __name__ == "__main__":
                os.makedirs("/faas-run/out", exist_ok=True)
                with multiprocessing.Pool(2) as pool:
                    print("exists", pool.map(work, range(3)))
                print("files", sorted(os.listdir("/faas-run/out")))
                print("sum", sum(int(open(f"/faas-run/out/{n}").read()) for n in os.listdir("/faas-run/out")))
                print("local", os.path.exists(sys.argv[0]))
            """
        )
    )
    tmp = tempfile.mkdtemp(prefix="faasmp-storage-run-")
    res = subprocess.run(
        [sys.executable, "-m", "faasmp", "run", "--storage", "/faas-run/", str(prog)],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": tmp},
    )
    assert res.returncode == 0, res.stderr
    assert "exists [True, True, True]" in res.stdout
    assert "files ['0.txt', '1.txt', '2.txt']" in res.stdout
    assert "sum 30" in res.stdout and "local True" in res.stdout
    # the objects are in the Lithops localhost storage of that run
    stored = pathlib.Path(tmp).glob("lithops-*/storage/faas-run/out/*.txt")
    assert sorted(p.name for p in stored) == ["0.txt", "1.txt", "2.txt"]
    bad = subprocess.run(
        [sys.executable, "-m", "faasmp", "run", "--storage", "relative", str(prog)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": tmp},
    )
    assert bad.returncode == 2 and "absolute path" in bad.stderr
