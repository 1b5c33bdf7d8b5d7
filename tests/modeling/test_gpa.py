import math

import pytest
import torch

from oxnet.modeling.gpa import PrototypeMemory, class_features, gpa_losses


def test_class_features_are_the_attention_weighted_sums_per_class():
    torch.manual_seed(0)
    b, c, k, h, w = 2, 5, 3, 4, 6
    feats = torch.randn(b, c, h, w)
    attn = torch.rand(b, k, h, w)
    out = class_features(feats, attn)
    assert out.shape == (b, k, c)
    for i in range(b):
        for cls in range(k):
            manual = (feats[i] * attn[i, cls][None]).sum(dim=(1, 2))  # Eq. 4
            assert torch.allclose(out[i, cls], manual, atol=1e-5)
    # a scrambled reshape (view instead of permute) would not give these features
    scrambled = torch.bmm(attn.flatten(2), feats.view(b, h * w, c))
    assert not torch.allclose(out, scrambled)


def test_class_features_gradient_reaches_features_and_attention():
    feats = torch.randn(1, 2, 3, 3, requires_grad=True)
    attn = torch.rand(1, 2, 3, 3, requires_grad=True)
    class_features(feats, attn).sum().backward()
    assert feats.grad.abs().sum() > 0 and attn.grad.abs().sum() > 0


def test_prototype_update_follows_eq5_with_beta_zero_at_first_update():
    mem = PrototypeMemory(num_classes=2, dim=2, momentum=0.7)
    feats = torch.tensor([[[1.0, 0.0], [5.0, 5.0]], [[3.0, 2.0], [7.0, 7.0]]])  # (B=2, K=2, C=2)
    conf = torch.tensor([[0.25, 0.5], [0.75, 0.5]])
    mask = torch.tensor([[True, False], [True, False]])  # class 1 has no positive in the batch
    mem.update(feats, conf, mask)
    first = (0.25 * feats[0, 0] + 0.75 * feats[1, 0]) / 1.0
    assert torch.allclose(mem.prototypes[0], first)
    assert mem.initialized.tolist() == [True, False]
    assert torch.all(mem.prototypes[1] == 0)
    mem.update(feats * 2, conf, torch.ones(2, 2, dtype=torch.bool))
    assert torch.allclose(mem.prototypes[0], 0.7 * first + 0.3 * 2 * first)
    assert torch.allclose(mem.prototypes[1], (0.5 * 10 + 0.5 * 14) * torch.ones(2))  # beta = 0 for class 1
    assert mem.initialized.all()


def test_gpa_losses_match_hand_computed_values():
    feats = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]], requires_grad=True)  # one image, two classes
    protos = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[True, True]])
    intra, inter = gpa_losses(feats, protos, mask, torch.tensor([True, True]), margin=1.0)
    # d = ||F - P||^2 / C with C = 2.
    # intra: d((1,0),(0,0)) = 1/2, d((0,.5),(0,1)) = .25/2 -> mean .3125
    assert intra.item() == pytest.approx(0.3125)
    # inter: F_0 vs P_1: d = 2/2 = 1 -> 0; F_1 vs P_0: d = .25/2 -> .875; mean .4375
    assert inter.item() == pytest.approx(0.4375)
    (intra + inter).backward()
    assert feats.grad.abs().sum() > 0


def test_gpa_losses_skip_unselected_pairs_and_missing_prototypes():
    feats = torch.randn(2, 3, 4, requires_grad=True)
    protos = torch.randn(3, 4)
    intra, inter = gpa_losses(
        feats, protos, torch.zeros(2, 3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    )
    assert intra.item() == 0 and inter.item() == 0
    mask = torch.tensor([[True, False, False], [False, False, False]])
    valid = torch.tensor([False, True, True])  # class 0 has no prototype yet
    intra, inter = gpa_losses(feats, protos, mask, valid, margin=100.0)
    assert intra.item() == 0  # its own prototype is missing
    expected = (
        torch.stack([100 - (feats[0, 0] - protos[c]).pow(2).mean() for c in (1, 2)]).clamp(min=0).mean()
    )
    assert inter.item() == pytest.approx(expected.item(), rel=1e-5)


def test_authors_form_by_hand():
    from oxnet.modeling.gpa import gpa_losses_authors

    # Two images, K = 2 classes, C = 2 channels; class 0 selected in both images, class 1 in none.
    feats = torch.tensor([[[1.0, 3.0], [9.0, 9.0]], [[3.0, 1.0], [9.0, 9.0]]], requires_grad=True)
    prototypes = torch.tensor([[2.0, 2.0], [2.0, 2.5]])
    mask = torch.tensor([[True, False], [True, False]])
    valid = torch.tensor([True, True])
    intra, inter = gpa_losses_authors(feats, prototypes, mask, valid, margin=1.0)
    # The batch feature of class 0 is the mean [2, 2]: d to P_0 is 0, to P_1 (0 + 0.25) / 2 = 0.125.
    assert intra.item() == pytest.approx(0.0)
    gap = 1.0 - math.sqrt(0.125)
    assert inter.item() == pytest.approx(gap**2 * gap**2, rel=1e-6)
    # The paper's form on the same input: per-image features, hinge on d.
    from oxnet.modeling.gpa import gpa_losses

    paper_intra, paper_inter = gpa_losses(feats, prototypes, mask, valid, margin=1.0)
    assert paper_intra.item() == pytest.approx(1.0)  # each image is (1 + 1) / 2 from P_0
    (intra + inter).backward()
    assert feats.grad[:, 1].abs().sum() == 0  # unselected pairs get no gradient
    none = gpa_losses_authors(feats, prototypes, torch.zeros(2, 2, dtype=torch.bool), valid)
    assert none[0].item() == 0.0 and none[1].item() == 0.0


def test_gpa_form_option_reaches_the_model():
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from oxnet.testing import random_input, tiny_cfg

    values = {}
    for form in ("paper", "authors"):
        cfg = tiny_cfg("daa_gpa")
        cfg.OXNET.GPA.FORM = form
        torch.manual_seed(0)
        model = build_model(cfg).train()
        batch = [
            random_input("weak", labels=[1, 1, 0], seed=1),
            random_input("weak", labels=[1, 1, 0], seed=2),
        ]
        with EventStorage(0):
            model(batch)  # first step: prototypes are set from this batch
            values[form] = {k: v.item() for k, v in model(batch).items()}
    assert values["paper"]["loss_gpa_intra"] != values["authors"]["loss_gpa_intra"]
    assert values["paper"]["loss_global"] == values["authors"]["loss_global"]


def _authors_update_prototypes(prototypes, cls_features, one_hot, probs, decay):
    """``update_prototypes`` (LLYXC/OXnet ``model.py`` l.309-335) in plain torch: the (B, D, C) features
    reshaped with ``.view(B, C, D)``, masked by the image labels; a prototype still all zero gets decay
    0; ``P <- d P + (1 - d) sum_b f p / sum_b (onehot p + 1e-10)``."""
    b, d = cls_features.shape[0], cls_features.shape[1]
    c = one_hot.shape[1]
    feats = cls_features.contiguous().view(b, c, d) * one_hot.unsqueeze(2)
    decays = torch.ones(c, 1) * decay
    decays[torch.where(prototypes.sum(dim=1) == 0)] = 0.0
    p = probs.unsqueeze(2)
    weighted = (feats * p).sum(dim=0) / (one_hot.unsqueeze(2) * p + 1e-10).sum(dim=0)
    return decays * prototypes + (1.0 - decays) * weighted, feats


def test_absent_class_decay_and_the_view_bug_equal_the_authors_update():
    """Three steps of OXNET.GPA.ABSENT_DECAY + VIEW_BUG against the authors' update; class 2 is absent
    at step 1 (its prototype must decay by 0.7), class 1 at step 2."""
    torch.manual_seed(0)
    b, ch, k, h, w = 2, 4, 3, 3, 3
    mem = PrototypeMemory(num_classes=k, dim=ch, momentum=0.7, absent_decay=True)
    theirs = torch.zeros(k, ch)
    presence = [
        torch.tensor([[1.0, 0, 1], [1, 1, 0]]),
        torch.tensor([[1.0, 1, 0], [0, 1, 0]]),
        torch.tensor([[1.0, 0, 1], [1, 0, 0]]),
    ]
    for step, one_hot in enumerate(presence):
        feats_m, attn = torch.randn(b, ch, h, w), torch.rand(b, k, h, w)
        probs = torch.rand(b, k)
        stacked = torch.einsum("bchw,bkhw->bck", feats_m, attn)  # their (B, D, C) stack of F_c
        theirs, masked = _authors_update_prototypes(
            theirs, stacked, one_hot, probs, 0.0 if step == 0 else 0.7
        )
        ours = class_features(feats_m, attn, view_bug=True)
        assert torch.allclose(ours * one_hot[:, :, None], masked, atol=1e-6)
        mem.update(ours, probs, one_hot.bool())
        assert torch.allclose(mem.prototypes, theirs, atol=1e-5), step
    # Eq. 5 as written leaves an absent class's prototype alone, and the paper's features differ
    paper = PrototypeMemory(num_classes=k, dim=ch, momentum=0.7)
    feats = torch.randn(b, k, ch)
    paper.update(feats, torch.ones(b, k), torch.tensor([[True, False, True], [True, False, False]]))
    before = paper.prototypes.clone()
    paper.update(feats, torch.ones(b, k), torch.tensor([[True, False, False], [False, False, False]]))
    assert torch.equal(paper.prototypes[2], before[2])
    decaying = PrototypeMemory(num_classes=k, dim=ch, momentum=0.7, absent_decay=True)
    decaying.update(feats, torch.ones(b, k), torch.tensor([[True, False, True], [True, False, False]]))
    decaying.update(feats, torch.ones(b, k), torch.tensor([[True, False, False], [False, False, False]]))
    assert torch.allclose(decaying.prototypes[2], 0.7 * before[2]) and (decaying.prototypes[1] == 0).all()
    assert not torch.allclose(class_features(feats_m, attn), class_features(feats_m, attn, view_bug=True))
