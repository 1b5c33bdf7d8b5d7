"""Reproduce the paper's Table 1 (methods) or Table 2 (supervision mixes) on a data spec, or run the
simulated annotation study (which images to box next, each strategy against random choice).

    python -m oxnet.bench table1|table2 --data SPEC --out DIR [--seeds N] [--iters K] [--rows a,b,c]
        [--warm-start K0] [--shard I/N] [--eval-period K] [--keep-weights] [KEY VALUE ...]
    python -m oxnet.bench advise --data SPEC --out DIR [--seeds N] [--strategies a,b] [--rounds R]
        [--per-round N] [--start F] [--iters K] [--round-iters K1] [--warm-start K0] [--method M]

SPEC is a preset (synthetic, tbx500, tbx-omni, toy) or a JSON spec file (see oxnet/bench/presets.py). Every
(row, seed) trains with the same data, schedule and evaluation; finished runs are kept in
DIR/results.json and skipped when the command is repeated, so an interrupted benchmark resumes. The
table is written to DIR/table1.md or DIR/table2.md. Trailing KEY VALUE pairs are detectron2 config
overrides applied after the spec's opts to every run, e.g. MODEL.DEVICE cuda.
"""

import argparse
import logging
import sys

import oxnet  # noqa: F401  (before detectron2)


def _epilog():
    import textwrap

    from .presets import TABLE1_EXTRA_ROWS, TABLE1_ROWS

    table1 = textwrap.fill(
        ", ".join(TABLE1_ROWS), width=78, initial_indent="  table1: ", subsequent_indent=" " * 10
    )
    extra = textwrap.fill(
        "not in the paper (listed when selected or in the spec's table1.rows): "
        + ", ".join(TABLE1_EXTRA_ROWS),
        width=78,
        initial_indent=" " * 10,
        subsequent_indent=" " * 10,
    )
    return (
        "rows (--rows):\n" + table1 + "\n" + extra + "\n"
        "  table2: setting numbers 1..N in the order of the table (the paper's nine settings\n"
        "          unless the spec lists its own)"
    )


def parse_args(argv=None):
    from .presets import PRESETS

    parser = argparse.ArgumentParser(
        prog="python -m oxnet.bench",
        description=__doc__,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("table", choices=("table1", "table2", "advise"))
    parser.add_argument("--data", required=True, help=f"preset name ({', '.join(PRESETS)}) or JSON spec file")
    parser.add_argument("--out", required=True, help="output folder (data, runs, results.json, tables)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per row (default: the spec's)")
    parser.add_argument(
        "--iters", type=int, default=None, help="training iterations per run (default: the spec's)"
    )
    parser.add_argument(
        "--rows",
        default="",
        help="comma-separated subset of the rows (listed below): method names (table1) or "
        "1-based setting numbers (table2); the table then shows these rows",
    )
    parser.add_argument(
        "--warm-start",
        type=int,
        default=None,
        metavar="ITERS",
        help="start every row from RetinaNet trained ITERS iterations on the row's boxes "
        "(0: from scratch; default: the spec's warm_start.iters)",
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="train only the I-th of N shares of the runs (0-based); N processes with the "
        "same --out, e.g. one per GPU (CUDA_VISIBLE_DEVICES), share the work and "
        "results.json",
    )
    parser.add_argument(
        "--eval-period",
        type=float,
        default=None,
        metavar="K",
        help="also evaluate every K iterations (below 1: this fraction of --iters) during "
        "training and keep the learning curve (default: the spec's eval_period, 0)",
    )
    parser.add_argument(
        "--keep-weights",
        action="store_true",
        help="keep each run's final weights (model_final.pth) and its config (config.yaml) "
        "in its folder under DIR/runs; the periodic checkpoints are deleted. Without "
        "it, every run's weights are deleted once the run is evaluated",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "float32", "bfloat16", "float16"),
        default=None,
        help="training precision (default: the spec's, auto: bfloat16 mixed precision where the "
        "machine computes bfloat16 natively, else float32); part of each run's fingerprint",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    study = parser.add_argument_group("advise (the simulated annotation study, oxnet/bench/advise_study.py)")
    study.add_argument(
        "--strategies",
        default="all",
        help="comma-separated strategies of python -m oxnet.advise, or 'all' (random is always run)",
    )
    study.add_argument("--rounds", type=int, default=3, help="annotation rounds (default 3)")
    study.add_argument(
        "--per-round",
        type=float,
        default=1 / 12,
        help="images boxed per round: a count, or below 1 a fraction of the pool (default 1/12)",
    )
    study.add_argument(
        "--start", type=float, default=0.25, help="boxed at the start: fraction or count (default 0.25)"
    )
    study.add_argument(
        "--round-iters", type=int, default=None, help="iterations per round (default: half of --iters)"
    )
    study.add_argument("--method", default="oxnet_neg", help="the model trained (default oxnet_neg)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the table from the runs already in results.json",
    )
    parser.add_argument(
        "opts",
        nargs="*",
        metavar="KEY VALUE",
        help="detectron2 config overrides for every run, after the spec's opts",
    )
    return parser.parse_intermixed_args(argv)


def check_overrides(opts):
    """Refuse config overrides that name an unknown key or do not come in pairs, before any run."""
    from detectron2.config import get_cfg

    from oxnet.config import add_oxnet_config

    if len(opts) % 2:
        raise ValueError(f"config overrides come in KEY VALUE pairs, got {opts}")
    cfg = get_cfg()
    add_oxnet_config(cfg)
    try:
        cfg.merge_from_list(list(opts))
    except (AssertionError, KeyError, ValueError) as e:  # yacs asserts on unknown keys
        raise ValueError(f"config override {opts}: {e}") from None


def main(argv=None):
    args = parse_args(argv)
    from detectron2.utils.logger import setup_logger

    from .presets import load_spec
    from .runner import run_table

    setup_logger(name="oxnet")
    setup_logger()  # detectron2's own log lines (training progress)
    try:
        spec = load_spec(args.data)
        if args.warm_start is not None:
            if args.warm_start < 0:
                raise ValueError(f"--warm-start must be >= 0, got {args.warm_start}")
            spec["warm_start"] = dict(spec["warm_start"], iters=args.warm_start)
        if args.precision is not None:
            spec["precision"] = args.precision
        check_overrides(args.opts)
        spec["opts"] = list(spec.get("opts", [])) + list(args.opts)
        spec["overrides"] = list(args.opts)  # named in the table
        if args.eval_period is not None:
            if args.eval_period < 0:
                raise ValueError(f"--eval-period must be >= 0, got {args.eval_period}")
            spec["eval_period"] = int(args.eval_period) if args.eval_period >= 1 else args.eval_period
        rows = [r.strip() for r in args.rows.split(",") if r.strip()]
        parts = args.shard.split("/")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) < 1:
            raise ValueError(f"--shard takes I/N (e.g. 0/4), got {args.shard!r}")
        shard = (int(parts[0]), int(parts[1]))
        if args.table == "advise":
            from oxnet.advise import STRATEGIES

            from .advise_study import run_advise_study

            names = STRATEGIES if args.strategies == "all" else args.strategies.split(",")
            path = run_advise_study(
                spec,
                args.out,
                [n.strip() for n in names if n.strip()],
                seeds=args.seeds if args.seeds is not None else spec["seeds"],
                rounds=args.rounds,
                per_round=args.per_round,
                start=args.start,
                iters=args.iters,
                round_iters=args.round_iters,
                method=args.method,
                shard=shard,
                train=not args.report_only,
            )
        else:
            path = run_table(
                args.table,
                spec,
                args.out,
                seeds=args.seeds,
                iters=args.iters,
                rows=rows,
                keep_weights=args.keep_weights,
                progress=not args.no_progress,
                train=not args.report_only,
                shard=shard,
            )
    except ValueError as e:
        logging.getLogger("oxnet.bench").error(str(e))
        return 2
    with open(path, encoding="utf-8") as f:
        print(f.read())
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
