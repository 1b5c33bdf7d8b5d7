import pytest
import torch
from detectron2.config import get_cfg
from detectron2.solver.build import maybe_add_gradient_clipping

from oxnet.engine.clipping import add_gradient_clipping


def _params(seed):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(64, 3, 7, 7), (64,), (256, 64, 1, 1), (9,), (5, 5), (3,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    scales = [30.0, 0.01, 2.0, 100.0, 1.0, 0.0]  # gradient norms far above and below the clip value
    for p, k in zip(params, scales):
        p.grad = k * torch.randn(p.shape, generator=gen)
    params.append(torch.nn.Parameter(torch.randn(4, generator=gen)))  # no gradient: left alone
    return params


@pytest.mark.parametrize(
    "clip_type,norm_type", [("norm", 2.0), ("norm", 1.0), ("norm", float("inf")), ("value", 2.0)]
)
def test_clipping_equals_detectron2_per_parameter_clipping_bit_for_bit(clip_type, norm_type):
    cfg = get_cfg()
    c = cfg.SOLVER.CLIP_GRADIENTS
    c.ENABLED, c.CLIP_TYPE, c.CLIP_VALUE, c.NORM_TYPE = True, clip_type, 1.5, norm_type
    ours, theirs = _params(0), _params(0)
    opt_ours = add_gradient_clipping(cfg, torch.optim.Adam)(ours, lr=0.1)
    # detectron2's value clipping fails on a tensor without gradient under current PyTorch
    # (clip_grad_value_ of an empty list): give it only the tensors with one
    opt_theirs = maybe_add_gradient_clipping(cfg, torch.optim.Adam)(
        theirs[:-1] if clip_type == "value" else theirs, lr=0.1
    )
    before = [p.detach().clone() for p in ours]
    for _ in range(3):  # Adam's state too
        opt_ours.step()
        opt_theirs.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad)
    clipped = ours[0].grad  # norm ~30 x 99 >> 1.5: scaled down to the clip value
    if clip_type == "norm":
        assert torch.linalg.vector_norm(clipped, norm_type) == pytest.approx(1.5, rel=1e-4)
    else:
        assert clipped.abs().max() == 1.5
    assert torch.equal(ours[-1], before[-1])  # the parameter without a gradient did not move


def test_disabled_clipping_returns_the_optimizer_and_bad_types_are_refused():
    cfg = get_cfg()
    assert add_gradient_clipping(cfg, torch.optim.SGD) is torch.optim.SGD
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "global"
    with pytest.raises(ValueError, match="CLIP_TYPE"):
        add_gradient_clipping(cfg, torch.optim.SGD)


def test_fused_adam_is_used_and_matches_the_loop():
    """OXNET.SOLVER.FUSED builds Adam's fused implementation; its steps match the per-parameter loop's
    to float32 rounding (not bit for bit, which is why the option is part of the bench fingerprint)."""
    from oxnet.engine import OXnetTrainer
    from oxnet.testing import tiny_cfg

    def run(fused):
        cfg = tiny_cfg("retinanet")
        cfg.OXNET.SOLVER.FUSED = fused
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(64, 64, 3, 3)), torch.nn.Parameter(torch.randn(64))]
        model = torch.nn.Module()
        model.w, model.b = params
        opt = OXnetTrainer.build_optimizer(cfg, model)
        assert opt.defaults["fused"] is (True if fused else None)
        for step in range(5):
            g = torch.Generator().manual_seed(step)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return [p.detach().clone() for p in params]

    loop, fused = run(False), run(True)
    for a, b in zip(loop, fused):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


def test_full_model_clipping_scales_all_gradients_by_one_coefficient_as_the_authors():
    """``CLIP_TYPE full_model`` at 0.1: the authors' ``clip_grad_norm_(retinanet.parameters(), 0.1)``
    (train_oxnet.py l.243), transcribed: total = sqrt(sum of every squared gradient entry), each
    gradient times min(1, 0.1 / (total + 1e-6)); the per-parameter "norm" clipping differs."""
    cfg = get_cfg()
    c = cfg.SOLVER.CLIP_GRADIENTS
    c.ENABLED, c.CLIP_TYPE, c.CLIP_VALUE, c.NORM_TYPE = True, "full_model", 0.1, 2.0
    params = _params(0)
    grads = [p.grad.clone() if p.grad is not None else None for p in params]
    total = sum(float((g.double() ** 2).sum()) for g in grads if g is not None) ** 0.5
    coef = min(1.0, 0.1 / (total + 1e-6))
    opt = add_gradient_clipping(cfg, torch.optim.SGD)(params, lr=1.0)
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, g, b in zip(params, grads, before):
        if g is None:
            assert torch.equal(p, b)
            continue
        assert torch.allclose(p.grad, g * coef, rtol=1e-5, atol=1e-12)
        assert torch.allclose(p.detach(), b - g * coef, rtol=1e-5, atol=1e-7)
    joint = torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None))
    assert joint.item() == pytest.approx(0.1, rel=1e-4)
    c.CLIP_TYPE = "norm"
    each = _params(0)
    add_gradient_clipping(cfg, torch.optim.SGD)(each, lr=1.0).step()
    assert not torch.allclose(each[1].grad, params[1].grad)  # a small gradient kept by per-tensor clipping
