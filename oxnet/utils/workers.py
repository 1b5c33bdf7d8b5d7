"""Map a function over items in worker processes, or inline when there are no workers."""

import contextlib
import os


@contextlib.contextmanager
def worker_map(fn, items, workers=0, ordered=True, chunksize=1, start_method=None):
    """Yield an iterator of ``fn(item)``: computed by a pool of ``workers`` processes when ``workers > 0``
    and there is more than one item, else inline with ``map``. ``ordered=False`` yields results as they
    finish. ``start_method`` defaults to fork (spawn on Windows). The pool is terminated on exit, also
    when the caller stops early or raises."""
    if workers <= 0 or len(items) <= 1:
        yield map(fn, items)
        return
    import multiprocessing as mp

    method = start_method or ("spawn" if os.name == "nt" else "fork")
    pool = mp.get_context(method).Pool(workers)
    try:
        yield (pool.imap if ordered else pool.imap_unordered)(fn, items, chunksize=chunksize)
    finally:
        pool.terminate()
