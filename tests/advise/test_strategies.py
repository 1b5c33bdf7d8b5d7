"""The annotation strategies on hand-made signals: scores, order, ties and what each needs."""

import math

import numpy as np
import pytest

from oxnet.advise import STRATEGIES, STRATEGY_REGISTRY, AdviceError, PoolSignals, candidates, rank_pool
from oxnet.advise.signals import label_matrix
from oxnet.advise.strategies import get_strategy, top_k
from oxnet.advise.strategies.kcenter import k_center_greedy
from oxnet.advise.strategies.teacher_student import box_disagreement, iou_matrix
from oxnet.advise.strategies.uncertainty import binary_entropy
from oxnet.advise.strategies.weak_disagreement import disagreement

NAMES = ["tb", "nodule"]


def det(boxes=(), scores=(), classes=()):
    return {
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float64),
        "classes": np.asarray(classes, dtype=np.int64),
    }


def signals(det_top, labels=None, global_scores=None, features=None, boxed=None, teacher_top=None, dets=None):
    det_top = np.asarray(det_top, dtype=np.float64)
    n = len(det_top)
    return PoolSignals(
        image_ids=list(range(100, 100 + n)),
        file_names=[f"im{i}.png" for i in range(n)],
        class_names=NAMES,
        det_top=det_top,
        detections=dets or [det() for _ in range(n)],
        labels=None if labels is None else np.asarray(labels, dtype=np.float64),
        global_scores=None if global_scores is None else np.asarray(global_scores, dtype=np.float64),
        teacher_top=None if teacher_top is None else np.asarray(teacher_top, dtype=np.float64),
        teacher_detections=None if teacher_top is None else [det() for _ in range(n)],
        features=None if features is None else np.asarray(features, dtype=np.float64),
        boxed_features=None if boxed is None else np.asarray(boxed, dtype=np.float64),
    )


def test_every_strategy_is_registered_once_and_listed():
    assert set(STRATEGY_REGISTRY.names()) == set(STRATEGIES)
    assert STRATEGIES[0] == "random"
    with pytest.raises(ValueError, match="registered: "):
        get_strategy("entropy")


def test_top_k_breaks_ties_by_pool_order_and_ranks_nan_last():
    picks = top_k([0.5, 0.9, float("nan"), 0.9, 0.5], 4, lambda i: f"r{i}")
    assert [p.index for p in picks] == [1, 3, 0, 4]
    assert [p.reason for p in picks] == ["r1", "r3", "r0", "r4"]
    assert [p.index for p in top_k([float("nan"), 0.1], 5, str)] == [1, 0]


def test_random_is_seeded_without_repeats_and_capped_by_the_pool():
    s = signals(np.zeros((10, 2)))
    rnd = get_strategy("random")
    a = [p.index for p in rnd.select(s, 4, np.random.default_rng(3))]
    b = [p.index for p in rnd.select(s, 4, np.random.default_rng(3))]
    c = [p.index for p in rnd.select(s, 4, np.random.default_rng(4))]
    assert a == b and a != c and len(set(a)) == 4
    assert a == list(np.random.default_rng(3).permutation(10)[:4])
    assert sorted(p.index for p in rnd.select(s, 50, np.random.default_rng(0))) == list(range(10))


def test_binary_entropy_values():
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == pytest.approx(0.0, abs=1e-9)
    p = 0.2
    assert binary_entropy(p) == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)))


def test_uncertainty_ranks_the_top_box_nearest_one_half_first():
    s = signals([[0.95, 0.0], [0.1, 0.45], [0.7, 0.02], [0.0, 0.0]])
    picks = get_strategy("uncertainty").select(s, 4, np.random.default_rng(0))
    assert [p.index for p in picks] == [1, 2, 0, 3]
    assert picks[0].score == pytest.approx(binary_entropy(0.45))
    assert "nodule box scores 0.45" in picks[0].reason


def test_weak_disagreement_takes_the_model_that_contradicts_the_label_most():
    labels = [[1, np.nan], [0, 1], [np.nan, np.nan], [1, 0]]
    det_top = [[0.1, 0.9], [0.8, 0.7], [0.5, 0.5], [0.9, 0.1]]
    glob = [[0.6, 0.5], [0.2, 0.1], [0.5, 0.5], [0.95, 0.05]]
    score, cls, source = disagreement(np.array(labels, float), np.array(det_top), np.array(glob))
    assert score[0] == pytest.approx(0.9) and cls[0] == 0 and source[0] == "detector"
    # image 1: the detector says tb (0.8) against a 0 label; the global head says nodule absent (0.1)
    # against a 1 label, which is the larger contradiction
    assert score[1] == pytest.approx(0.9) and cls[1] == 1 and source[1] == "global head"
    assert np.isnan(score[2])
    assert score[3] == pytest.approx(0.1)
    s = signals(det_top, labels=labels, global_scores=glob)
    picks = get_strategy("weak_disagreement").select(s, 4, np.random.default_rng(0))
    assert [p.index for p in picks] == [0, 1, 3, 2]
    assert picks[0].reason.startswith("labelled tb present; detector's top box 0.10, global head 0.60")
    # without a global head only the detector counts
    score, _, _ = disagreement(np.array(labels, float), np.array(det_top))
    assert score[1] == pytest.approx(0.8)


def test_iou_and_box_disagreement_values():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [0, 0, 10, 10]]
    assert iou_matrix(a, b)[0].tolist() == pytest.approx([50 / 150, 1.0])
    same = det([[0, 0, 10, 10]], [0.8], [0])
    assert box_disagreement(same, same) == 0.0
    assert box_disagreement(same, det([[20, 20, 30, 30]], [0.5], [0])) == 1.0
    # another class does not match even when the boxes coincide
    assert box_disagreement(same, det([[0, 0, 10, 10]], [0.5], [1])) == 1.0
    # student: two boxes, one matched with IoU 1/3; teacher: one box matched with IoU 1/3
    student = det([[0, 0, 10, 10], [40, 40, 50, 50]], [0.6, 0.2], [0, 0])
    teacher = det([[5, 0, 15, 10]], [0.5], [0])
    s_to_t = (0.6 * (1 - 1 / 3) + 0.2 * 1.0) / 0.8
    t_to_s = 1 - 1 / 3
    assert box_disagreement(student, teacher) == pytest.approx(0.5 * (s_to_t + t_to_s))
    assert box_disagreement(det(), det()) == 0.0


def test_teacher_student_adds_the_top_score_gap_and_the_box_term():
    s = signals([[0.2, 0.1], [0.5, 0.5]], teacher_top=[[0.7, 0.1], [0.5, 0.45]])
    s.detections = [det([[0, 0, 10, 10]], [0.2], [0]), det([[0, 0, 10, 10]], [0.5], [0])]
    s.teacher_detections = [det([[0, 0, 10, 10]], [0.7], [0]), det([[20, 20, 30, 30]], [0.5], [0])]
    picks = get_strategy("teacher_student").select(s, 2, np.random.default_rng(0))
    assert [p.index for p in picks] == [1, 0]
    assert picks[0].score == pytest.approx(0.05 + 1.0)
    assert picks[1].score == pytest.approx(0.5 + 0.0)
    assert "top tb box 0.70 vs 0.20" in picks[1].reason


def test_k_center_greedy_covers_the_pool_from_the_boxed_images():
    x = np.array([[1.0], [2.0], [10.0], [11.0]])
    picks = k_center_greedy(x, 3, centers=np.array([[0.0]]))
    # 11 first; then 2 (distance 2 to the centre 0); then 1 and 10 tie at distance 1: the lower index
    assert [i for i, _ in picks] == [3, 1, 0]
    assert [d for _, d in picks] == pytest.approx([11.0, 2.0, 1.0])
    # without centres the first pick is the farthest from the mean (6.0): 0 (distance 5) wins the tie
    # with 3 by the lower index
    assert k_center_greedy(x, 1)[0] == (0, pytest.approx(5.0))
    assert k_center_greedy(x, 2, candidates=[0, 1])[1][0] == 1


def test_combined_spreads_the_most_contradicted_images():
    labels = [[1, 0]] * 7
    # images 0-5 contradict their tb label (0 the most), image 6 agrees with it
    det_top = [[0.0, 0.0], [0.01, 0.0], [0.02, 0.0], [0.03, 0.0], [0.04, 0.0], [0.05, 0.0], [0.9, 0.0]]
    # all near the boxed image at the origin except 2 (contradicted) and 6 (not)
    features = [[0, 0], [0, 0.01], [5, 5], [0, 0.02], [0.01, 0], [0, 0.03], [9, 9]]
    s = signals(det_top, labels=labels, features=features, boxed=[[0.0, 0.0]])
    plain = [p.index for p in get_strategy("weak_disagreement").select(s, 2, np.random.default_rng(0))]
    combined = get_strategy("combined").select(s, 2, np.random.default_rng(0))
    assert plain == [0, 1]
    # the shortlist is the 6 most contradicted (not 6); k-center takes 2, then the farthest of the rest
    assert [p.index for p in combined] == [2, 5]
    assert combined[0].score == pytest.approx(np.hypot(5, 5)) and combined[1].score == pytest.approx(0.03)
    assert combined[0].reason.startswith("labelled tb present; detector's top box 0.02")
    assert combined[0].reason.endswith("spread by k-center (distance 7.071)")
    # a shortlist longer than the labelled images: the unlabelled ones join by uncertainty
    s.labels[1:] = np.nan
    picks = get_strategy("combined").select(s, 2, np.random.default_rng(0))
    assert [p.index for p in picks] == [6, 2]  # 6 (0.9: the most uncertain) is the farthest
    # no weak labels: the detector's uncertainty makes the shortlist (0, 2, 3: not the sure image 1,
    # however far it lies), k-center picks from it
    s = signals([[0.5, 0], [0.99, 0], [0.45, 0], [0.4, 0]], features=[[0], [9], [0.1], [3]], boxed=[[0]])
    assert [p.index for p in get_strategy("uncertainty").select(s, 1, np.random.default_rng(0))] == [0]
    assert [p.index for p in get_strategy("combined").select(s, 1, np.random.default_rng(0))] == [3]


def test_rank_pool_skips_strategies_whose_signals_are_missing():
    s = signals([[0.5, 0.1], [0.2, 0.3]])
    rankings, skipped = rank_pool(s, ["uncertainty", "weak_disagreement", "teacher_student"], 1)
    assert list(rankings) == ["uncertainty"]
    assert "weak labels" in skipped["weak_disagreement"] and "mean teacher" in skipped["teacher_student"]
    with pytest.raises(AdviceError, match="weak_disagreement.*needs weak labels"):
        rank_pool(s, ["weak_disagreement"], 1)
    with pytest.raises(AdviceError, match="budget"):
        rank_pool(s, ["random"], 0)


def test_candidates_and_labels_from_the_pool_file():
    coco = {
        "images": [
            {"id": 1, "supervision": "full"},
            {"id": 2, "supervision": "weak", "image_labels": {"tb": 1, "nodule": -1}},
            {"id": 3, "supervision": "unlabeled"},
            {"id": 4, "supervision": "weak", "image_labels": {"tb": 0}},
        ]
    }
    cands, boxed = candidates(coco, exclude_ids=[4])
    assert [i["id"] for i in cands] == [2, 3] and [i["id"] for i in boxed] == [1]
    m = label_matrix(coco["images"][1:], NAMES)
    assert m[0, 0] == 1 and np.isnan(m[0, 1]) and np.isnan(m[1]).all() and m[2, 0] == 0
    assert label_matrix([coco["images"][2]], NAMES) is None
