"""Atomic file output: write to a temporary file in the same folder, then ``os.replace``; and an
inter-process lock for read-modify-write updates of a shared file."""

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_json(path, obj, **json_kwargs):
    """Serialize ``obj`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, **json_kwargs)


@contextlib.contextmanager
def locked(path, timeout=600):
    """Hold an exclusive inter-process lock on ``path`` (through the file ``path + ".lock"``), so that
    processes sharing a file (e.g. a benchmark's results.json) can read, update and write it in turn."""
    import portalocker

    with portalocker.Lock(os.fspath(path) + ".lock", mode="a", timeout=timeout):
        yield
