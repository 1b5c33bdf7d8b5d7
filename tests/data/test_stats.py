import json
import subprocess
import sys

from oxnet.data.stats import compute_stats, format_stats

COCO = {
    "images": [
        {
            "id": 1,
            "file_name": "1.png",
            "width": 100,
            "height": 100,
            "supervision": "full",
            "patient_id": "A",
        },
        {
            "id": 2,
            "file_name": "2.png",
            "width": 100,
            "height": 100,
            "supervision": "full",
            "patient_id": "A",
            "image_labels": {"mass": -1},
        },
        {
            "id": 3,
            "file_name": "3.png",
            "width": 100,
            "height": 100,
            "supervision": "weak",
            "patient_id": "B",
            "image_labels": {"mass": 1, "nodule": -1},
        },
        {
            "id": 4,
            "file_name": "4.png",
            "width": 100,
            "height": 100,
            "supervision": "weak",
            "image_labels": {"nodule": 0},
        },
        {"id": 5, "file_name": "5.png", "width": 100, "height": 100, "supervision": "unlabeled"},
    ],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10, 10, 5, 5]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [20, 20, 5, 5]},
    ],
    "categories": [{"id": 1, "name": "mass"}, {"id": 2, "name": "nodule"}],
}


def test_compute_stats():
    stats = compute_stats(COCO)
    assert (stats["images"], stats["boxes"]) == (5, 3)
    assert (stats["patients"], stats["images_without_patient_id"]) == (2, 2)
    assert stats["supervision"] == {
        "full": {"images": 2, "boxes": 3},
        "weak": {"images": 2, "boxes": 0},
        "unlabeled": {"images": 1, "boxes": 0},
    }
    assert list(stats["categories"]) == ["mass", "nodule"]
    # mass: box on image 1 (+), -1 on full image 2, + on weak image 3
    assert stats["categories"]["mass"] == {
        "boxes": 1,
        "images_with_boxes": 1,
        "positive": 2,
        "negative": 0,
        "uncertain": 1,
    }
    # nodule: two boxes on image 1 (+), none on full image 2 (0), -1 on image 3, 0 on image 4
    assert stats["categories"]["nodule"] == {
        "boxes": 2,
        "images_with_boxes": 1,
        "positive": 1,
        "negative": 2,
        "uncertain": 1,
    }
    text = format_stats(stats)
    assert "images: 5" in text and "nodule" in text


def test_cli(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps(COCO))
    cmd = [sys.executable, "-m", "oxnet.data.stats", str(path)]
    out = subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == compute_stats(COCO)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "patients: 2" in out and "unlabeled" in out

    bad = subprocess.run(cmd + ["--image-root", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "set.json: 5 of 5 image files are missing" in bad.stderr


def _vindr_import_without_images(tmp_path):
    """A VinDr file imported with --allow-missing-images: width/height null."""
    import importlib.util
    import pathlib

    csv = tmp_path / "train.csv"
    csv.write_text(
        "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
        "i0,Cardiomegaly,3,R1,100,200,300,400\n"
        "i0,Cardiomegaly,3,R2,102,198,301,405\n"
        "i1,No finding,14,R1,,,,\n"
    )
    script = pathlib.Path(__file__).resolve().parents[2] / "datasets" / "prepare_vindr.py"
    spec = importlib.util.spec_from_file_location("prepare_vindr_stats", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "vindr.json"
    module.main(["--csv", str(csv), "--allow-missing-images", "--out", str(out)])
    return out


def test_cli_counts_file_with_unknown_sizes(tmp_path):
    path = _vindr_import_without_images(tmp_path)
    coco = json.loads(path.read_text())
    assert [img["width"] for img in coco["images"]] == [None, None]
    cmd = [sys.executable, "-m", "oxnet.data.stats", str(path)]
    stats = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, check=True).stdout)
    assert (stats["images"], stats["boxes"], stats["images_with_unknown_size"]) == (2, 1, 2)
    assert stats["categories"]["Cardiomegaly"]["positive"] == 1
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "images of unknown size: 2" in text

    coco["images"][1]["supervision"] = "partial"  # the rest of the format is still validated
    path.write_text(json.dumps(coco))
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "vindr.json: image id=2: field 'supervision' has unknown value 'partial'" in bad.stderr


def test_known_sizes_report_none_unknown():
    assert compute_stats(COCO)["images_with_unknown_size"] == 0
    assert "unknown size" not in format_stats(compute_stats(COCO))
