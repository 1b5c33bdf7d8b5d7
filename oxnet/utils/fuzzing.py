"""Hypothesis strategies and guards for fuzzing the readers (tests and ``make fuzz``).

``OXNET_FUZZ_EXAMPLES`` (environment) switches the fuzz tests from a few derandomized examples to that
many random ones.
"""

import contextlib
import copy
import json
import os
import signal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "FUZZ_EXAMPLES",
    "fuzz_settings",
    "no_hang",
    "bounded_memory",
    "guarded",
    "byte_mutations",
    "json_mutations",
    "csv_mutations",
    "ODD_VALUES",
    "ODD_CELLS",
]

FUZZ_EXAMPLES = int(os.environ.get("OXNET_FUZZ_EXAMPLES", "0") or 0)
#: Seconds one example may take before it counts as a hang.
HANG_SECONDS = 20
#: Growth of the process's peak memory a fuzz test may cause.
MEMORY_BOUND = 512 * 2**20


def fuzz_settings(examples):
    """``examples`` derandomized examples in the normal run; ``OXNET_FUZZ_EXAMPLES`` random ones."""
    common = dict(
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    if FUZZ_EXAMPLES:
        return settings(max_examples=FUZZ_EXAMPLES, derandomize=False, **common)
    return settings(max_examples=examples, derandomize=True, **common)


@contextlib.contextmanager
def no_hang(seconds=HANG_SECONDS):
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""

    def on_alarm(signum, frame):
        raise AssertionError(f"reader still running after {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@contextlib.contextmanager
def bounded_memory(bound=MEMORY_BOUND):
    """Fail when the body raises the process's resident memory by more than ``bound`` bytes (the peak,
    reset before the body through /proc/self/clear_refs; skipped where that is unavailable)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident size (VmHWM)
        start = _status_kib("VmRSS")
    except OSError:
        yield
        return
    yield
    grown = (_status_kib("VmHWM") - start) * 1024
    assert grown < bound, f"peak memory grew by {grown / 2**20:.0f} MiB while reading a fuzzed input"


@contextlib.contextmanager
def guarded():
    with no_hang(), bounded_memory():
        yield


# ------------------------------------------------------------------------------------------- mutations
#: Values a mutation puts in place of a JSON value or a header field.
ODD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    0.5,
    -1e9,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "x",
    "full",
    "weak",
    "1",
    "0",
    [],
    {},
    [1],
    [0, 0, 10, 10],
    [None] * 4,
    {"id": 1},
    {"class0": 1},
    "\x00",
    "é" * 3,
    2**70,
    10**400,
]


@st.composite
def byte_mutations(draw, data, max_ops=3):
    """Truncate, overwrite, insert, delete or duplicate random bytes of ``data``."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["truncate", "set", "insert", "delete", "duplicate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            del data[i:]
        elif op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
    return bytes(data)


def _paths(node, prefix=()):
    """Every (path, value) of a JSON tree, the root included."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _get(node, path):
    for p in path:
        node = node[p]
    return node


@st.composite
def json_mutations(draw, tree, max_ops=3):
    """Delete, replace, duplicate or retype random nodes of a JSON tree (a deep copy is mutated)."""
    tree = json.loads(json.dumps(tree))
    for _ in range(draw(st.integers(1, max_ops))):
        paths = [p for p, _ in _paths(tree) if p]
        if not paths:
            break
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent, key = _get(tree, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "replace", "duplicate", "stringify"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(ODD_VALUES)))  # never share the list's objects
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(json.loads(json.dumps(parent[key])))
        elif op == "stringify":
            parent[key] = json.dumps(parent[key])
    return tree


#: Cell values a CSV mutation writes.
ODD_CELLS = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "-1",
    "0",
    "1",
    "2",
    "0.5",
    "-0.0",
    "abc",
    '"',
    "1,2",
    "|",
    "No Finding",
    "No finding",
    "a|",
    "|b",
    "\x00",
    "é",
    "1" * 40,
    "00000000001.0",
]


@st.composite
def csv_mutations(draw, rows, max_ops=3):
    """Mutate a CSV given as a list of rows (header first): replace, delete or add cells, delete or
    duplicate rows; returns the rows (serialize with ``csv.writer``)."""
    rows = [list(r) for r in rows]
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(
            st.sampled_from(
                ["cell", "cell", "cell", "drop_cell", "add_cell", "drop_row", "dup_row", "swap_rows"]
            )
        )
        if not rows:
            break
        r = draw(st.integers(0, len(rows) - 1))
        if op == "cell" and rows[r]:
            rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(st.sampled_from(ODD_CELLS))
        elif op == "drop_cell" and rows[r]:
            del rows[r][draw(st.integers(0, len(rows[r]) - 1))]
        elif op == "add_cell":
            rows[r].append(draw(st.sampled_from(ODD_CELLS)))
        elif op == "drop_row":
            del rows[r]
        elif op == "dup_row":
            rows.insert(r, list(rows[r]))
        elif op == "swap_rows":
            q = draw(st.integers(0, len(rows) - 1))
            rows[r], rows[q] = rows[q], rows[r]
    return rows
