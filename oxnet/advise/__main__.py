"""Which images to box next: rank a pool's weak and unlabeled images with a trained model.

    python -m oxnet.advise --weights MODEL/model_final.pth --pool pool.json --budget 50 \
        [--strategy combined[,random,...] | all] [--image-root DIR] [--out advice.json] [--sheet advice.png]

The pool is an OXnet-COCO file: its weak and unlabeled images are the candidates, its fully labeled
ones are already boxed (never advised; the k-center strategies start from them). The first strategy's
ranking is the advice (``images`` in the JSON; the review page's annotation view orders its queue by
it); further strategies are written under ``others`` for comparison. A strategy whose signals the
model or the pool lacks (weak labels, a mean teacher, a global head) is skipped with a message, or is
an error when it is the first one named. Strategies:
"""

import argparse
import logging
import os
import sys

import oxnet  # noqa: F401  (before detectron2)


def _strategy_help():
    from .strategies import STRATEGIES, get_strategy

    return "\n".join(f"  {n:18s} {get_strategy(n).description}" for n in STRATEGIES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m oxnet.advise",
        description=__doc__ + _strategy_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--weights", required=True, help="the trained model (model_final.pth)")
    parser.add_argument("--config-file", default=None, help="its config (default: config.yaml beside it)")
    parser.add_argument("--pool", required=True, help="OXnet-COCO file of the images to choose from")
    parser.add_argument(
        "--image-root", default=None, help="folder of the pool's images (default: the pool's)"
    )
    parser.add_argument("--budget", type=int, required=True, help="how many images to advise")
    parser.add_argument(
        "--strategy",
        default="combined",
        help="strategy (listed above), several separated by commas (the first is the advice), or 'all'",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strategy")
    parser.add_argument("--out", default="advice.json", help="the advice file (JSON)")
    parser.add_argument("--sheet", default=None, help="also write a contact sheet of the advice (PNG)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "opts", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. MODEL.DEVICE cuda"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from detectron2.utils.logger import setup_logger

    from oxnet.data.format import OmniFormatError, read_omni_coco, validate_omni_coco
    from oxnet.engine.predictor import OXnetPredictor
    from oxnet.utils.atomic import atomic_write_json

    from .advice import AdviceError, advice_record, candidates, rank_pool
    from .signals import compute_signals, load_teacher
    from .strategies import STRATEGIES

    log = setup_logger(name="oxnet")
    names = (
        list(STRATEGIES)
        if args.strategy == "all"
        else [s.strip() for s in args.strategy.split(",") if s.strip()]
    )
    image_root = args.image_root or os.path.dirname(os.path.abspath(args.pool))
    try:
        unknown = [n for n in names if n not in STRATEGIES]
        if unknown or not names:
            raise AdviceError(
                f"unknown strategy {unknown or args.strategy!r}; choose from {', '.join(STRATEGIES)}"
            )
        if not os.path.isfile(args.weights):
            raise AdviceError(
                f"--weights {args.weights}: no such file (give the trained model's model_final.pth)"
            )
        coco = read_omni_coco(args.pool)
        validate_omni_coco(coco, args.pool, image_root)
        cands, boxed = candidates(coco)
        if not cands:
            raise AdviceError(
                f"{args.pool}: no weak or unlabeled image to advise ({len(boxed)} are boxed already)"
            )
        log.info(f"{args.pool}: {len(cands)} candidates, {len(boxed)} boxed already (never advised)")
        predictor = OXnetPredictor.from_weights(args.weights, args.config_file, args.opts)
        teacher = load_teacher(predictor, args.weights) if "teacher_student" in names else None
        from tqdm import tqdm

        bar = tqdm(total=len(cands) + len(boxed), desc="advise", disable=args.no_progress)

        def progress(done, total):
            bar.update(done - bar.n)

        def path(img):
            return os.path.join(image_root, img["file_name"])

        signals = compute_signals(
            predictor,
            cands,
            [path(i) for i in cands],
            teacher=teacher,
            boxed_paths=[path(i) for i in boxed] if {"kcenter", "combined"} & set(names) else [],
            batch_size=args.batch_size,
            progress=progress,
            json_file=args.pool,
        )
        bar.close()
        rankings, skipped = rank_pool(signals, names, args.budget, args.seed)
        record = advice_record(
            signals, rankings, skipped, args.budget, args.seed, args.pool, args.weights, len(boxed)
        )
    except (AdviceError, OmniFormatError, FileNotFoundError, ValueError) as e:
        logging.getLogger("oxnet.advise").error(str(e))
        return 2
    atomic_write_json(args.out, record, indent=2)
    by_id = {img["id"]: img for img in cands}
    if args.sheet:
        from .sheet import advice_sheet

        advice_sheet(
            record["images"], [path(by_id[e["image_id"]]) for e in record["images"]], signals, args.sheet
        )
    for e in record["images"][:10]:
        score = "n/a" if e["score"] is None else f"{e['score']:.3f}"
        print(f"{e['rank']:3d}  {e['file_name']}  {score}  {e['reason']}")
    if len(record["images"]) > 10:
        print(f"     ... {len(record['images']) - 10} more")
    print(f"written {args.out}" + (f" and {args.sheet}" if args.sheet else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
