import json
import multiprocessing as mp
import os

import pytest

from oxnet.testing import read_json
from oxnet.utils.atomic import atomic_open, atomic_write_json, locked


def _add_keys(path, prefix, n):
    for i in range(n):
        with locked(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            data[f"{prefix}{i}"] = i
            atomic_write_json(path, data)


def test_locked_updates_from_concurrent_processes_all_survive(tmp_path):
    path = str(tmp_path / "results.json")
    atomic_write_json(path, {})
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add_keys, args=(path, p, 30)) for p in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(read_json(path)) == 60  # no read-modify-write lost an update


def test_atomic_open_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"old": 1})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("{broken")
        raise RuntimeError("interrupted")
    assert read_json(path) == {"old": 1} and os.listdir(tmp_path) == ["a.json"]
