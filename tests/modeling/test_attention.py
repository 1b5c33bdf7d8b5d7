import pytest
import torch
from torch.nn import functional as F

from oxnet.modeling.attention import daa_logits, gate_attention, local_attention, normalize_attention


def _level(b, a, k, h, w, fill=-8.0):
    return torch.full((b, a * k, h, w), fill)


def test_local_attention_takes_max_over_anchors_and_the_level_with_the_highest_peak():
    a, k = 2, 2
    p3, p4 = _level(1, a, k, 4, 4), _level(1, a, k, 2, 2)
    # channel layout is anchor-major: channel = anchor * K + class
    p3[0, 1 * k + 0, 1, 2] = 3.0  # class 0 peaks on P3 (anchor 1)
    p3[0, 0 * k + 1, 0, 0] = 1.0  # class 1: weaker peak on P3 ...
    p4[0, 1 * k + 1, 1, 1] = 2.0  # ... than on P4
    attn = local_attention([p3, p4], k, (4, 4))
    assert attn.shape == (1, k, 4, 4)
    # class 0 comes from P3 unchanged (same grid): peak at (1, 2) equal to sigmoid(3)
    assert torch.isclose(attn[0, 0, 1, 2], torch.sigmoid(torch.tensor(3.0)))
    assert attn[0, 0].flatten().argmax() == 1 * 4 + 2
    # class 1 comes from P4, upsampled: its maximum lies in P4's cell (1, 1), i.e. the lower right
    peak = attn[0, 1].flatten().argmax()
    assert peak // 4 >= 2 and peak % 4 >= 2
    assert attn[0, 1].max() < torch.sigmoid(torch.tensor(2.0)) + 1e-6


def test_local_attention_passes_gradient_only_into_the_chosen_level():
    a, k = 1, 1
    p3 = _level(1, a, k, 4, 4).requires_grad_()
    p4 = torch.full((1, a * k, 2, 2), 2.0, requires_grad=True)  # P4 has the highest peak
    local_attention([p3, p4], k, (4, 4)).sum().backward()
    assert p4.grad.abs().sum() > 0
    assert p3.grad.abs().sum() == 0


def test_normalized_attention_sums_to_one_and_daa_pools_the_cam():
    torch.manual_seed(0)
    attn = normalize_attention(torch.rand(2, 3, 5, 5))
    assert torch.allclose(attn.sum(dim=(2, 3)), torch.ones(2, 3))
    cam = torch.randn(2, 3, 5, 5)
    logits = daa_logits(cam, attn)
    assert logits.shape == (2, 3)
    manual = torch.stack([torch.stack([(cam[b, c] * attn[b, c]).sum() for c in range(3)]) for b in range(2)])
    assert torch.allclose(logits, manual, atol=1e-6)
    # with a one-hot attention DAA reads the CAM at that pixel
    one_hot = torch.zeros(1, 1, 5, 5)
    one_hot[0, 0, 3, 1] = 1.0
    assert daa_logits(cam[:1, :1], normalize_attention(one_hot)).item() == cam[0, 0, 3, 1].item()


def _attention_grad(mode, labels):
    torch.manual_seed(0)
    raw = torch.rand(2, 3, 4, 4, requires_grad=True)
    cam = torch.randn(2, 3, 4, 4, requires_grad=True)
    gated = gate_attention(normalize_attention(raw), labels, mode)
    assert torch.equal(gated, normalize_attention(raw))  # values never change
    logits = daa_logits(cam, gated)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.clamp(min=0)).backward()
    grad = torch.zeros_like(raw) if raw.grad is None else raw.grad
    per_class = grad.abs().flatten(2).sum(dim=2)  # (B, K)
    return per_class, cam.grad.abs().flatten(2).sum(dim=2)


def test_gate_attention_keeps_the_detector_gradient_of_the_selected_classes_only():
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    present = labels == 1
    grad_all, cam_all = _attention_grad("all", labels)
    assert (grad_all > 0).all()  # Eq. 3 as written: absent classes reach the attention too
    grad_pos, cam_pos = _attention_grad("positive", labels)
    assert (grad_pos[present] > 0).all() and (grad_pos[~present] == 0).all()
    assert torch.allclose(grad_pos[present], grad_all[present])
    grad_none, cam_none = _attention_grad("none", labels)
    assert (grad_none == 0).all()
    # The global head's CAM learns every label in every mode.
    assert torch.equal(cam_all, cam_pos) and torch.equal(cam_all, cam_none) and (cam_all > 0).all()


def test_negative_label_moves_attention_towards_low_cam():
    # Why "positive" exists: for an absent class, descending the loss raises R where X is lowest.
    raw = torch.tensor([[[[1.0, 1.0]]]], requires_grad=True)
    cam = torch.tensor([[[[2.0, -2.0]]]])
    logits = daa_logits(cam, normalize_attention(raw))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.zeros(1, 1)).backward()
    assert raw.grad[0, 0, 0, 1] < 0 < raw.grad[0, 0, 0, 0]  # a step raises the low-X location


def test_gate_attention_rejects_unknown_mode():
    with pytest.raises(ValueError, match="positive"):
        gate_attention(torch.rand(1, 1, 2, 2), torch.ones(1, 1), "some")


def test_align_corners_changes_only_the_resize_convention():
    # A 2x2 map upsampled to 4x4: with align_corners the corners keep the source corner values
    # exactly; without it (PyTorch's default) the corners are those values too, but the inner
    # pixels sit at other positions between them.
    p = torch.zeros(1, 1, 2, 2)
    p[0, 0] = torch.tensor([[-2.0, 0.0], [0.0, 2.0]])
    aligned = local_attention([p], 1, (4, 4), align_corners=True)[0, 0]
    default = local_attention([p], 1, (4, 4))[0, 0]
    s = torch.sigmoid(torch.tensor([-2.0, 0.0, 2.0]))
    assert torch.isclose(aligned[0, 0], s[0]) and torch.isclose(aligned[3, 3], s[2])
    assert torch.isclose(aligned[0, 1], s[0] + (s[1] - s[0]) / 3)  # a third of the way along
    assert torch.isclose(default[0, 1], s[0] + (s[1] - s[0]) / 4)  # a quarter, centre-aligned


def _authors_local_map(level_probs, size):
    """``_get_local_map`` (LLYXC/OXnet ``model.py`` l.266-307, normalize=True) in plain torch: per image
    and class, max over the anchors of each level, the first level whose peak is strictly higher than
    the best so far, bilinear resize with align_corners=True, divided by its sum."""
    out = []
    for i in range(level_probs[0].shape[0]):
        per_class = []
        for c in range(level_probs[0].shape[-1]):
            best, chosen = -1, None
            for lmp in level_probs:  # (B, H, W, A, K)
                m = torch.max(lmp[i], 2)[0][..., c]
                if torch.max(m) > best:
                    best, chosen = torch.max(m), m
            resized = F.interpolate(chosen[None, None], size=size, mode="bilinear", align_corners=True)[0, 0]
            per_class.append(resized / resized.sum())
        out.append(torch.stack(per_class))
    return torch.stack(out)


def test_daa_attention_with_align_corners_equals_the_authors_local_map():
    torch.manual_seed(0)
    b, a, k = 2, 3, 4
    logits = [torch.randn(b, a * k, s, s) * 2 for s in (8, 4, 2, 1)]
    # a tie between two levels' peaks for one class: the finer level must win, as their strict ">"
    logits[1][0, 2 * k + 1] = 9.0
    logits[2][0, 0 * k + 1] = 9.0
    theirs = _authors_local_map(
        [x.sigmoid().view(b, a, k, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2) for x in logits], (4, 4)
    )
    ours = normalize_attention(local_attention(logits, k, (4, 4), align_corners=True))
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(normalize_attention(local_attention(logits, k, (4, 4))), theirs, atol=1e-4)
