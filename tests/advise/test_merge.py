"""Folding the annotation view's saved images back into their pool."""

import json

import pytest

from oxnet.advise.merge import main, merge_annotations
from oxnet.data.format import validate_omni_coco
from oxnet.testing import read_json

CATS = [{"id": 1, "name": "tb"}, {"id": 2, "name": "nodule"}]


def pool():
    return {
        "categories": CATS,
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 64, "supervision": "full"},
            {"id": 2, "file_name": "b.png", "width": 64, "height": 64, "supervision": "weak",
             "image_labels": {"tb": 1, "nodule": 0}},
            {"id": 3, "file_name": "c.png", "width": 64, "height": 64, "supervision": "unlabeled"},
        ],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100,
                         "iscrowd": 0}],
    }  # fmt: skip


def saved():
    review = {"by": "alice", "at": "2026-12-06T03:00:00+00:00", "revision": 1, "no_finding": False}
    return {
        "categories": CATS,
        "images": [
            {"id": 2, "file_name": "b.png", "width": 64, "height": 64, "supervision": "full",
             "image_labels": {"tb": 1, "nodule": 0}, "review": review},
            {"id": 3, "file_name": "c.png", "width": 64, "height": 64, "supervision": "full",
             "image_labels": {"tb": 0, "nodule": 0}, "review": dict(review, no_finding=True)},
        ],
        "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400,
                         "iscrowd": 0}],
    }  # fmt: skip


def test_saved_images_replace_their_pool_entries_and_ids_are_renumbered():
    merged, n = merge_annotations(pool(), saved())
    assert n == 2
    assert [i["supervision"] for i in merged["images"]] == ["full", "full", "full"]
    assert merged["images"][2]["review"]["no_finding"] is True
    assert [(a["id"], a["image_id"], a["bbox"]) for a in merged["annotations"]] == [
        (1, 1, [1, 1, 10, 10]),
        (2, 2, [5, 5, 20, 20]),
    ]
    validate_omni_coco(merged, "merged.json", check_files=False)


def test_unknown_images_and_categories_are_named():
    bad = saved()
    bad["images"][0]["id"] = 99
    with pytest.raises(ValueError, match=r"ann.json: image id=99 \(b.png\) is not in pool.json"):
        merge_annotations(pool(), bad, "pool.json", "ann.json")
    bad = saved()
    bad["categories"] = [{"id": 1, "name": "mass"}]
    with pytest.raises(ValueError, match="category id=1 .'mass'. is not the pool's .'tb'"):
        merge_annotations(pool(), bad, "pool.json", "ann.json")


def test_cli_writes_the_merged_file(tmp_path, capsys):
    (tmp_path / "pool.json").write_text(json.dumps(pool()))
    (tmp_path / "ann.json").write_text(json.dumps(saved()))
    out = tmp_path / "next.json"
    assert main([str(tmp_path / "pool.json"), str(tmp_path / "ann.json"), "--out", str(out)]) == 0
    assert len(read_json(out)["annotations"]) == 2
    assert "2 reviewed images folded in; 3 of 3 images boxed" in capsys.readouterr().out
    assert main([str(tmp_path / "pool.json"), str(tmp_path / "missing.json"), "--out", str(out)]) == 2
