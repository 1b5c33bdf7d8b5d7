"""An image corrupted after validation: training logs it, replaces it with another image of its stream,
counts it and stops only past OXNET.DATA.MAX_FAILED_FRACTION; ``python -m oxnet.data.validate --decode``
finds it beforehand."""

import json
import logging
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from oxnet.data import register_omni_coco
from oxnet.data.io import ImageReadError
from oxnet.data.loader import OmniBatches, OmniTrainLoader, TooManyBadImagesError
from oxnet.testing import REPO_ROOT, log_messages, tiny_cfg, write_toy_dataset

GARBAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # a PNG signature followed by noise


@pytest.fixture
def toy(tmp_path):
    json_file = write_toy_dataset(tmp_path / "data", n_full=4, n_weak=2, n_unlabeled=2)
    name = f"bad_images_{uuid.uuid4().hex[:8]}"
    register_omni_coco(name, json_file, tmp_path / "data" / "images")
    return name, json_file, tmp_path / "data" / "images"


def _trainer(name, out, fraction, workers=0, max_iter=4):
    from oxnet.engine import OXnetTrainer

    cfg = tiny_cfg("oxnet")
    cfg.DATASETS.TRAIN = (name,)
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 2, 2, 2
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 1e-3, max_iter, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OXNET.DATA.MAX_FAILED_FRACTION = fraction
    cfg.OUTPUT_DIR = str(out)
    trainer = OXnetTrainer(cfg)  # the dataset is loaded and validated here
    trainer.resume_or_load(resume=False)
    return trainer


def test_training_survives_one_corrupt_image_and_counts_it(toy, tmp_path):
    name, _, images = toy
    trainer = _trainer(name, tmp_path / "run", fraction=0.25)  # 1 of the 4 full images may fail
    bad = images / "toy_0000.png"  # a full image: 4 iterations of 2 draw every full image twice
    bad.write_bytes(GARBAGE)  # corrupted after validation
    with log_messages("oxnet.data.loader", level=logging.WARNING) as messages:
        trainer.train()
    assert trainer.iter == 4  # detectron2 leaves iter at MAX_ITER after the last step
    assert trainer._train_loader.num_failed == 1 and list(trainer._train_loader.failed["full"]) == [str(bad)]
    logged = [m for m in messages if str(bad) in m]
    assert (
        len(logged) == 1
        and "replaced by another full image" in logged[0]
        and "cannot read image" in logged[0]
    )
    with open(tmp_path / "run" / "metrics.json") as f:
        last = [json.loads(line) for line in f][-1]
    assert last["iteration"] == 3 and last["data/failed_images"] == 1


def test_fraction_zero_stops_at_the_first_corrupt_image(toy, tmp_path):
    name, _, images = toy
    trainer = _trainer(name, tmp_path / "run", fraction=0.0, max_iter=2)
    (images / "toy_0002.png").write_bytes(GARBAGE[:40])
    with pytest.raises(TooManyBadImagesError, match=r"toy_0002\.png.*MAX_FAILED_FRACTION=0"):
        trainer.train()


class _Mapper:
    """Maps a dict to its file name; raises ImageReadError for the files in ``bad``."""

    def __init__(self, bad):
        self.bad = set(bad)

    def __call__(self, d):
        if d["file_name"] in self.bad:
            raise ImageReadError(d["file_name"], "corrupt")
        return d["file_name"]


def _stream(n):
    return {"full": [{"file_name": f"img{i:02d}.png"} for i in range(n)], "weak": [], "unlabeled": []}


def test_worker_processes_count_each_file_once_and_together():
    """With 2 loader workers, a file both workers meet counts once; two files that each worker meets
    once exceed a limit of 1 in the training process."""
    streams = _stream(20)
    probe = OmniBatches(streams, {"full": 2}, _Mapper(()), seed=3)
    position = {p: streams["full"][probe._index(0, "full", p)]["file_name"] for p in range(40)}
    # worker 0 maps the even iterations, worker 1 the odd ones; 2 images per iteration, 20 per epoch:
    # a file at an even iteration in epoch 0 and an odd one in epoch 1 is met by both workers
    iteration = {}
    for p, f in position.items():
        iteration.setdefault(f, []).append(p // 2)
    shared = next(f for f, (t0, t1) in iteration.items() if t0 % 2 == 0 and t1 % 2 == 1)
    batches = OmniBatches(streams, {"full": 2}, _Mapper([shared]), seed=3, max_failed_fraction=0.05)
    loader = OmniTrainLoader(batches, num_workers=2)
    seen = [x for _, batch in zip(range(20), loader) for x in batch]
    assert shared not in seen and len(seen) == 40 and loader.num_failed == 1

    two = _Mapper([position[0], position[2]])  # one in each worker's first batch
    batches = OmniBatches(streams, {"full": 2}, two, seed=3, max_failed_fraction=0.05)  # 1 of 20 may fail
    with pytest.raises(TooManyBadImagesError, match="2 of 20 full") as e:
        for _ in zip(range(4), OmniTrainLoader(batches, num_workers=2)):
            pass
    assert "worker process" not in str(e.value)  # counted in the training process, over both workers
    assert position[0] in str(e.value) and position[2] in str(e.value)


def test_substitutes_are_reproducible_and_from_the_same_stream():
    streams = {
        "full": [{"file_name": f"f{i}"} for i in range(6)],
        "weak": [{"file_name": f"w{i}"} for i in range(6)],
        "unlabeled": [],
    }
    mapper = _Mapper(["w0", "w1", "f3"])
    a = OmniBatches(streams, {"full": 2, "weak": 2}, mapper, seed=1, max_failed_fraction=0.5)
    b = OmniBatches(streams, {"full": 2, "weak": 2}, mapper, seed=1, max_failed_fraction=0.5)
    for t in range(6):
        batch = a[t]
        assert batch == b[t]
        assert [x[0] for x in batch] == ["f", "f", "w", "w"] and not set(batch) & mapper.bad
    assert sorted(a.failed["weak"]) == ["w0", "w1"] and list(a.failed["full"]) == ["f3"]


def test_the_fraction_is_checked():
    with pytest.raises(ValueError, match="MAX_FAILED_FRACTION"):
        OmniBatches(_stream(4), {"full": 2}, _Mapper(()), max_failed_fraction=1.5)


def test_validate_decode_reports_the_corrupt_file(toy, tmp_path):
    _, json_file, images = toy
    (images / "toy_0005.png").write_bytes(GARBAGE)
    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "oxnet.data.validate",
        json_file,
        "--images",
        str(images),
        "--decode",
        "--no-progress",
        "--report",
        str(report),
    ]
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "toy_0005.png" in run.stdout and "1 of 8 images failed" in run.stdout
    rep = json.loads(report.read_text())
    assert rep["images"] == 8 and rep["decoded"] == 7 and rep["failed"] == 1
    assert [f["file_name"] for f in rep["failures"]] == ["toy_0005.png"]
    assert "cannot read image" in rep["failures"][0]["error"]

    (images / "toy_0005.png").write_bytes((images / "toy_0004.png").read_bytes())  # repaired
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(report.read_text())["failed"] == 0


def test_validate_reports_a_size_mismatch_and_format_errors(toy, tmp_path):
    from oxnet.data.validate import main

    _, json_file, images = toy
    big = np.zeros((64, 80), np.uint8)
    big[0, 0] = 255
    from oxnet.data.io import write_png

    write_png(images / "toy_0001.png", big)
    report = tmp_path / "r.json"
    assert (
        main(
            [
                json_file,
                "--images",
                str(images),
                "--decode",
                "--workers",
                "2",
                "--no-progress",
                "--report",
                str(report),
            ]
        )
        == 1
    )
    failure = json.loads(report.read_text())["failures"][0]
    assert failure["file_name"] == "toy_0001.png" and "80x64" in failure["error"]

    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [}')
    assert main([str(broken), "--no-progress"]) == 2
