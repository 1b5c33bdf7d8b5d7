"""Random COCO ground truth and detections, for tests and benchmarks of the evaluation code."""

import numpy as np

__all__ = ["synthetic_coco"]


def synthetic_coco(
    num_images=200,
    num_classes=9,
    gt_per_image=1.5,
    dets_per_image=21.0,
    image_size=(1024, 1024),
    missing_classes=(),
    empty_image_fraction=0.3,
    seed=0,
):
    """Random ground truth (COCO dict) and detections (COCO results list) with realistic structure.

    Box sides are log-uniform from 6 to 500 pixels, so areas fall in COCO's small, medium and large
    ranges. About two thirds of the ground-truth boxes get a jittered detection with a higher score;
    the remaining detections are random false positives (some on images without boxes).

    Args:
        missing_classes: category ids (1-based) that get no ground-truth box (they still get detections).
        empty_image_fraction: fraction of images without any ground-truth box.

    Returns:
        (gt, predictions): a COCO detection dict and a list of result dicts.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    categories = [{"id": c + 1, "name": f"class {c + 1}"} for c in range(num_classes)]
    images = [
        {"id": i + 1, "file_name": f"{i + 1:06d}.png", "height": height, "width": width}
        for i in range(num_images)
    ]
    present = np.array([c + 1 for c in range(num_classes) if c + 1 not in set(missing_classes)])

    def random_boxes(n):
        side = np.exp(rng.uniform(np.log(6), np.log(500), size=(n, 2)))
        w = np.minimum(side[:, 0], width - 1)
        h = np.minimum(side[:, 1], height - 1)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        return np.stack([x, y, w, h], axis=1)

    # Ground truth: Poisson counts on non-empty images.
    nonempty = rng.random(num_images) >= empty_image_fraction
    counts = np.where(
        nonempty, rng.poisson(gt_per_image / max(1 - empty_image_fraction, 1e-6), num_images), 0
    )
    gt_img = np.repeat(np.arange(1, num_images + 1), counts)
    n_gt = len(gt_img)
    gt_cat = rng.choice(present, size=n_gt) if len(present) else np.zeros(0, int)
    gt_box = np.round(random_boxes(n_gt), 2)
    annotations = [
        {
            "id": k + 1,
            "image_id": int(gt_img[k]),
            "category_id": int(gt_cat[k]),
            "bbox": [float(v) for v in gt_box[k]],
            "area": float(gt_box[k, 2] * gt_box[k, 3]),
            "iscrowd": 0,
        }
        for k in range(n_gt)
    ]
    gt = {"images": images, "annotations": annotations, "categories": categories}

    # True-positive-like detections: jittered copies of two thirds of the boxes.
    hit = rng.random(n_gt) < 2 / 3
    jitter = rng.normal(0, 0.07, size=(int(hit.sum()), 4)) * np.repeat(gt_box[hit, 2:], 2, axis=1)
    tp_box = gt_box[hit] + jitter
    tp_box[:, 2:] = np.maximum(tp_box[:, 2:], 1.0)
    tp_img, tp_cat = gt_img[hit], gt_cat[hit]
    tp_score = rng.beta(4, 2, size=len(tp_box))
    # False positives: random boxes, classes and images.
    n_fp = max(int(round(dets_per_image * num_images)) - len(tp_box), 0)
    fp_box = random_boxes(n_fp)
    fp_img = rng.integers(1, num_images + 1, size=n_fp)
    fp_cat = rng.integers(1, num_classes + 1, size=n_fp)
    fp_score = rng.beta(2, 4, size=n_fp)

    box = np.round(np.concatenate([tp_box, fp_box]), 2)
    img = np.concatenate([tp_img, fp_img])
    cat = np.concatenate([tp_cat, fp_cat])
    score = np.round(np.concatenate([tp_score, fp_score]), 5)
    order = rng.permutation(len(box))
    predictions = [
        {
            "image_id": int(img[k]),
            "category_id": int(cat[k]),
            "bbox": [float(v) for v in box[k]],
            "score": float(score[k]),
        }
        for k in order
    ]
    return gt, predictions
