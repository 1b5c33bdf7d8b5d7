"""oxnet.utils.workers.worker_map: the same results inline and in a pool, in order or as they finish."""

import os

from oxnet.utils.workers import worker_map


def _square_and_pid(x):
    return x * x, os.getpid()


def test_inline_and_pool_give_the_same_results():
    items = list(range(20))
    with worker_map(_square_and_pid, items) as results:
        inline = list(results)
    assert [r for r, _ in inline] == [x * x for x in items] and {p for _, p in inline} == {os.getpid()}
    with worker_map(_square_and_pid, items, workers=2, chunksize=3) as results:
        pooled = list(results)
    assert [r for r, _ in pooled] == [x * x for x in items]  # ordered by default
    assert os.getpid() not in {p for _, p in pooled}
    with worker_map(_square_and_pid, items, workers=2, ordered=False) as results:
        assert sorted(r for r, _ in results) == sorted(x * x for x in items)


def test_one_item_runs_inline_and_an_early_exit_stops_the_pool():
    with worker_map(_square_and_pid, [3], workers=2) as results:
        assert list(results) == [(9, os.getpid())]
    import multiprocessing as mp

    before = len(mp.active_children())
    try:
        with worker_map(_square_and_pid, list(range(100)), workers=2) as results:
            next(iter(results))
            assert len(mp.active_children()) == before + 2
            raise KeyError("stop")
    except KeyError:
        pass
    assert len(mp.active_children()) == before  # terminated, not left running
