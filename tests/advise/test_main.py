"""python -m oxnet.advise on a trained tiny model: the advice file, the sheet and the errors."""

import json
import os
import shutil

import pytest
import torch

from oxnet.advise.__main__ import main
from oxnet.testing import log_messages, read_json, tiny_model_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny trained OXnet whose checkpoint also holds its mean teacher, and its toy pool (4 boxed,
    2 weak, 2 unlabeled images)."""
    work = tmp_path_factory.mktemp("advise")
    folder = tiny_model_folder(str(work), max_iter=2, score_shift=2.0)
    weights = os.path.join(folder, "model_final.pth")
    state = torch.load(weights, weights_only=True)
    trained = torch.load(os.path.join(work, "train", "rank0.pth"), weights_only=True)
    state["teacher"] = trained["teacher"]
    torch.save(state, weights)
    return weights, os.path.join(work, "data", "toy.json")


def pool_file(tmp_path, src, change):
    coco = read_json(src)
    change(coco)
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(coco))
    return str(path)


def run(args):
    with log_messages("oxnet.advise") as logs:
        code = main(args)
    return code, logs


def test_advice_ranks_only_the_pools_weak_and_unlabeled_images(model, tmp_path, capsys):
    weights, pool = model
    images_dir = os.path.join(os.path.dirname(pool), "images")
    out, sheet = str(tmp_path / "advice.json"), str(tmp_path / "advice.png")
    args = ["--weights", weights, "--pool", pool, "--image-root", images_dir, "--budget", "3"]
    code, _ = run([*args, "--strategy", "all", "--out", out, "--sheet", sheet, "--no-progress"])
    assert code == 0
    advice = read_json(out)
    coco = read_json(pool)
    not_full = {i["id"] for i in coco["images"] if i["supervision"] != "full"}
    assert advice["strategy"] == "random" and advice["candidates"] == 4 and advice["already_boxed"] == 4
    others = {"uncertainty", "weak_disagreement", "teacher_student", "kcenter", "combined"}
    assert set(advice["others"]) == others
    assert advice["skipped_strategies"] == {}
    for ranking in [advice["images"], *advice["others"].values()]:
        assert [e["rank"] for e in ranking] == [1, 2, 3]
        assert {e["image_id"] for e in ranking} <= not_full and len({e["image_id"] for e in ranking}) == 3
        scores = [e["score"] for e in ranking]
        known = [v for v in scores if v is not None]  # None (no score) ranks last
        assert scores[: len(known)] == sorted(known, reverse=True)
    # weak-label disagreement only scores the two weak images; the unlabeled ones rank after them
    weak = {i["id"] for i in coco["images"] if i["supervision"] == "weak"}
    wd = advice["others"]["weak_disagreement"]
    assert {e["image_id"] for e in wd[:2]} == weak and wd[2]["score"] is None
    assert os.path.getsize(sheet) > 5000
    assert "written" in capsys.readouterr().out
    # the same seed gives the same advice
    out2 = str(tmp_path / "again.json")
    assert main([*args, "--strategy", "random", "--out", out2, "--no-progress"]) == 0
    assert read_json(out2)["images"] == advice["images"]
    # the annotation view queues the advised images in the advice's order, with their reasons
    from oxnet.serve.annotate import AnnotationPool

    queue = AnnotationPool(pool, images_dir, advice=out, out=str(tmp_path / "saved.json")).queue_items()
    assert [(q["id"], q["rank"], q["reason"]) for q in queue] == [
        (e["image_id"], e["rank"], e["reason"]) for e in advice["images"]
    ]


def test_a_pool_without_weak_labels_skips_the_strategies_that_need_them(model, tmp_path):
    weights, pool = model
    images_dir = os.path.join(os.path.dirname(pool), "images")

    def unlabel(coco):
        for img in coco["images"]:
            if img["supervision"] == "weak":
                img["supervision"] = "unlabeled"
                img.pop("image_labels")

    path = pool_file(tmp_path, pool, unlabel)
    out = str(tmp_path / "a.json")
    base = ["--weights", weights, "--pool", path, "--image-root", images_dir, "--budget", "2"]
    base.append("--no-progress")
    code, logs = run([*base, "--strategy", "uncertainty,weak_disagreement", "--out", out])
    assert code == 0
    assert "weak labels" in read_json(out)["skipped_strategies"]["weak_disagreement"]
    code, logs = run([*base, "--strategy", "weak_disagreement", "--out", str(tmp_path / "b.json")])
    assert code == 2 and not os.path.exists(tmp_path / "b.json")
    assert any("needs weak labels" in m and "choose another" in m for m in logs)


def test_errors_name_what_is_wrong(model, tmp_path):
    weights, pool = model
    images_dir = os.path.join(os.path.dirname(pool), "images")
    base = ["--pool", pool, "--image-root", images_dir, "--budget", "2", "--no-progress"]
    code, logs = run(["--weights", weights, *base, "--strategy", "entropy"])
    assert code == 2 and any("unknown strategy" in m and "kcenter" in m for m in logs)
    code, logs = run(["--weights", str(tmp_path / "none.pth"), *base])
    assert code == 2 and any("none.pth: no such file" in m for m in logs)
    # a teacher-less checkpoint: teacher_student is skipped, or refused when asked for first
    state = torch.load(weights, weights_only=True)
    state.pop("teacher")
    bare = tmp_path / "model_final.pth"
    torch.save(state, bare)
    shutil.copy(os.path.join(os.path.dirname(weights), "config.yaml"), tmp_path / "config.yaml")
    code, logs = run(["--weights", str(bare), *base, "--strategy", "teacher_student"])
    assert code == 2 and any("needs the mean teacher" in m for m in logs)
    # every pool image boxed already: nothing to advise
    path = pool_file(tmp_path, pool, lambda c: [i.update(supervision="full") for i in c["images"]])
    code, logs = run(["--weights", weights, "--pool", path, "--image-root", images_dir, "--budget", "2"])
    assert code == 2 and any("no weak or unlabeled image to advise" in m for m in logs)
