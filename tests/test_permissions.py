"""Files written through data/corpus.py's atomic writers get the permissions the umask gives.

Issue 13: tempfile.mkstemp creates 0600 and the rename kept it, so under umask 022 every
manifest, feature file, corpus.json, checkpoint and config.json was unreadable to everyone
else on a shared machine. Now each writer creates its temporary file with mode 0o666 and lets
the kernel apply the umask, as open(path, "w") does. A failed write leaves neither a partial
file nor a temporary file behind.
"""
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from data.corpus import (
    SampleRecord,
    atomic_copy,
    atomic_save_npy,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    load_features,
    read_manifest,
    update_manifest,
    write_manifest,
)

UMASKS = (0o022, 0o027, 0o077, 0o002)


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:03o}")
def umask(request):
    """Run the test under this umask (process-wide; each xdist worker is its own process)."""
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).rglob("*") if p.name.endswith(".tmp"))


def rec(sid: str) -> SampleRecord:
    return SampleRecord(sid, "train", ("A", "B"), f"features/{sid}.npy")


def _checkpoint(path: Path) -> None:  # train.py writes last.pt/best.pt exactly like this
    import torch

    atomic_write(path, lambda f: torch.save({"model": {"w": torch.zeros(3)}, "epoch": 1}, f))


WRITERS = {
    "atomic_write": lambda d: atomic_write(d / "plot.png", lambda f: f.write(b"\x89PNG...")),
    "atomic_write_bytes": lambda d: atomic_write_bytes(d / "x.pose", b"\x00" * 10),
    "atomic_write_text": lambda d: atomic_write_text(d / "corpus.json", "{}\n"),
    "atomic_write_text(config.json)": lambda d: atomic_write_text(d / "run" / "config.json", "{}"),
    "atomic_save_npy": lambda d: atomic_save_npy(d / "features" / "a.npy", np.zeros((3, 1629), np.float32)),
    "write_manifest": lambda d: write_manifest(d, [rec("a")]),
    "update_manifest": lambda d: update_manifest(d, [rec("b")]),
    "atomic_copy": lambda d: (atomic_write_text(d / "src.txt", "hello"), atomic_copy(d / "src.txt", d / "copy" / "dst.txt")),
    "checkpoint (torch.save)": lambda d: _checkpoint(d / "run" / "last.pt"),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_uses_the_umask(writer, umask, tmp_path):
    WRITERS[writer](tmp_path)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written, "the writer wrote nothing"
    for path in written:
        assert mode(path) == 0o666 & ~umask, f"{path.relative_to(tmp_path)}: {oct(mode(path))} under umask {umask:03o}"
    assert leftovers(tmp_path) == []


def test_rewrite_takes_the_current_umask_and_keeps_no_temp(tmp_path):
    """A replaced file gets the permissions of a new file under the umask in force now."""
    path = tmp_path / "manifest.csv"
    before = os.umask(0o077)
    try:
        write_manifest(tmp_path, [rec("a")])
        assert mode(path) == 0o600
        os.umask(0o022)
        write_manifest(tmp_path, [rec("a"), rec("b")])
        assert mode(path) == 0o644
    finally:
        os.umask(before)
    assert [r.id for r in read_manifest(tmp_path, validate=False)] == ["a", "b"]
    assert leftovers(tmp_path) == []


def test_umask_is_left_alone(tmp_path):
    """The writers never read the umask with os.umask(0)-and-back (process-wide, racy with threads)."""
    before = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(before)


class Boom(Exception):
    pass


def _fail_half_way(f):
    f.write(b"partial data")
    raise Boom("disk full")


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_failed_write_of_a_new_file_leaves_nothing(error, tmp_path):
    def fail(f):
        f.write(b"partial")
        raise error()

    with pytest.raises(error):
        atomic_write(tmp_path / "corpus.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(umask, tmp_path):
    path = tmp_path / "features" / "a.npy"
    good = np.arange(2 * 1629, dtype=np.float32).reshape(2, 1629)
    atomic_save_npy(path, good)
    with pytest.raises(Boom):
        atomic_write(path, _fail_half_way)
    with pytest.raises(ValueError):  # np.save refuses an object array with allow_pickle=False
        atomic_save_npy(path, np.array([object()], dtype=object))
    np.testing.assert_array_equal(load_features(path, mmap=False), good)
    assert mode(path) == 0o666 & ~umask
    assert leftovers(tmp_path) == []


def test_failed_copy_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_copy(tmp_path / "absent.npy", tmp_path / "out" / "a.npy")
    assert not (tmp_path / "out" / "a.npy").exists() and leftovers(tmp_path) == []


def test_concurrent_writers_of_one_file(tmp_path):
    """Threads writing the same path: every temporary name is unique, the result is one whole write."""
    path = tmp_path / "corpus.json"
    texts = [f"{i}\n" * 2000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write_text, args=(path, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in texts
    assert leftovers(tmp_path) == []


def test_merged_shard_files_use_the_umask(umask, tmp_path):
    """data.extract --merge copies feature files; the copies get the umask's permissions, not 0600."""
    from data.extract import merge_corpora

    shard = tmp_path / "shard1"
    atomic_save_npy(shard / "features" / "a.npy", np.zeros((2, 1629), np.float32))
    write_manifest(shard, [rec("a")])
    os.chmod(shard / "features" / "a.npy", 0o600)  # the source's own mode is not what decides
    assert merge_corpora([shard], tmp_path / "out") == 1
    for name in ("manifest.csv", "features/a.npy"):
        assert mode(tmp_path / "out" / name) == 0o666 & ~umask, name
    assert leftovers(tmp_path) == []
