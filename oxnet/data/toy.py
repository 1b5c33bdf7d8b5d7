"""A toy OXnet-COCO dataset: grey PNGs with bright squares, for tests, the bench's wiring preset and
benchmarks."""

import os

import cv2
import numpy as np

from oxnet.data.format import write_omni_coco


def write_toy_dataset(out_dir, n_full=4, n_weak=2, n_unlabeled=2, size=64, num_classes=3, seed=0):
    """Write a toy OXnet-COCO dataset (grey PNGs with bright squares, one class per grey level)
    and return the JSON path. Full images carry boxes, weak images image labels."""
    rng = np.random.default_rng(seed)
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    levels = ["full"] * n_full + ["weak"] * n_weak + ["unlabeled"] * n_unlabeled
    for i, level in enumerate(levels):
        img = rng.normal(60, 8, (size, size)).clip(0, 255)
        present = {}
        for _ in range(int(rng.integers(1, 3))):
            c = int(rng.integers(num_classes))
            side = int(rng.integers(size // 6, size // 3))
            x, y = (int(v) for v in rng.integers(0, size - side, 2))
            img[y : y + side, x : x + side] = 120 + 50 * c
            present.setdefault(c, []).append([x, y, side, side])
        name = f"toy_{i:04d}.png"
        cv2.imwrite(os.path.join(img_dir, name), img.astype(np.uint8))
        entry = {"id": i + 1, "file_name": name, "height": size, "width": size, "supervision": level}
        if level == "weak":
            entry["image_labels"] = {f"class{c}": int(c in present) for c in range(num_classes)}
        images.append(entry)
        if level == "full":
            for c, boxes in present.items():
                for b in boxes:
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": i + 1,
                            "category_id": c + 1,
                            "bbox": b,
                            "area": b[2] * b[3],
                            "iscrowd": 0,
                        }
                    )
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": f"class{c}"} for c in range(num_classes)],
    }
    path = os.path.join(out_dir, "toy.json")
    write_omni_coco(path, coco)
    return path
