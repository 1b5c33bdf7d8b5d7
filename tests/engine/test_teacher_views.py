import torch
from detectron2.modeling import build_model

from oxnet.engine.hooks import MeanTeacherHook
from oxnet.testing import random_input, tiny_cfg


def _batch():
    full = random_input("full", boxes=[[8, 8, 40, 40]], classes=[0])
    unl = random_input("unlabeled", seed=1)
    unl["image_weak"] = unl["image"].clone()
    return [full, unl]


def test_teacher_self_ensemble_over_perturbed_views_gives_mean_and_spread():
    torch.manual_seed(0)
    student = build_model(tiny_cfg("mmt_psm"))
    single = MeanTeacherHook(student, views=1)
    batch = _batch()
    single.attach_soft_targets(batch)
    assert "teacher_probs" in batch[1] and "teacher_std" not in batch[1] and "teacher_probs" not in batch[0]
    clean = batch[1]["teacher_probs"]

    ensemble = MeanTeacherHook(student, views=3, noise_std=20.0)
    a, b = _batch(), _batch()
    ensemble.attach_soft_targets(a, iteration=5)
    ensemble.attach_soft_targets(b, iteration=5)
    assert torch.equal(a[1]["teacher_probs"], b[1]["teacher_probs"])  # same iteration, same noise
    assert a[1]["teacher_std"].shape == clean.shape and a[1]["teacher_std"].max() > 0
    assert not torch.allclose(a[1]["teacher_probs"], clean)  # the perturbed views count

    quiet = MeanTeacherHook(student, views=3, noise_std=0.0)  # no perturbation: the plain teacher
    c = _batch()
    quiet.attach_soft_targets(c)
    assert torch.allclose(c[1]["teacher_probs"], clean, atol=1e-6)
    assert c[1]["teacher_std"].max() < 1e-6
