"""Rerun the paper's comparison (Tables 1 and 2) on your data: ``python -m oxnet.bench table1 --data SPEC
--out DIR``. See :mod:`oxnet.bench.presets` for the data specs and ``BENCHMARKS.md`` for results."""

from .presets import DEFAULTS, PRESETS, TABLE1_ROWS, load_spec
from .runner import Row, run_table, table1_rows, table2_rows

__all__ = [
    "DEFAULTS",
    "PRESETS",
    "TABLE1_ROWS",
    "Row",
    "load_spec",
    "run_table",
    "table1_rows",
    "table2_rows",
    "main",
]


def main(argv=None):
    from .__main__ import main as _main

    return _main(argv)
