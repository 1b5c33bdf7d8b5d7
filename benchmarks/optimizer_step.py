"""Optimizer step with detectron2's per-parameter gradient clipping against OXnet's multi-tensor one.

    OMP_NUM_THREADS=2 python benchmarks/optimizer_step.py [--config-file configs/oxnet_R101.yaml]
        [--device cpu|cuda] [--repeats 21]

Both optimizers are Adam over the same parameters (the config's model, OXNet with its global head),
with ``SOLVER.CLIP_GRADIENTS`` from the config (norm 10 per tensor in ``Base-OXnet.yaml``) and the
same random gradients, re-drawn before every step (half the tensors above the clip value). One step
is ``clip + Adam``; the two are timed alternately and the medians reported, with the ratio.
"""

import argparse
import statistics
import sys
import time

import oxnet  # noqa: F401  # isort: skip  (first: compatibility shims and quiet import-time warnings)
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

import oxnet.modeling  # noqa: F401
from oxnet.config import add_oxnet_config
from oxnet.engine.clipping import add_gradient_clipping
from oxnet.testing import REPO_ROOT


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-file", default=f"{REPO_ROOT}/configs/oxnet_R101.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=21)
    args = p.parse_args(argv)
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.MODEL.DEVICE = args.device
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    models = {name: build_model(cfg) for name in ("detectron2", "oxnet")}
    models["oxnet"].load_state_dict(models["detectron2"].state_dict())
    makers = {"detectron2": maybe_add_gradient_clipping, "oxnet": add_gradient_clipping}
    opts = {
        name: makers[name](cfg, torch.optim.Adam)(get_default_optimizer_params(m, base_lr=1e-5), lr=1e-5)
        for name, m in models.items()
    }
    params = {name: [p for p in m.parameters() if p.requires_grad] for name, m in models.items()}
    gen = torch.Generator(device=args.device).manual_seed(0)

    def draw_grads():
        for i, (a, b) in enumerate(zip(params["detectron2"], params["oxnet"])):
            g = torch.randn(a.shape, generator=gen, device=args.device)
            g *= (4 * cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE if i % 2 else 0.1) / g.norm().clamp(min=1e-12)
            a.grad, b.grad = g, g.clone()

    times = {name: [] for name in opts}
    for r in range(args.repeats + 2):
        draw_grads()
        for name in list(opts) if r % 2 == 0 else list(opts)[::-1]:
            sync()
            t = time.perf_counter()
            opts[name].step()
            sync()
            if r >= 2:  # two warm-up steps
                times[name].append(time.perf_counter() - t)
    same = all(torch.equal(a, b) for a, b in zip(params["detectron2"], params["oxnet"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    n = sum(p.numel() for p in params["oxnet"])
    print(
        f"{cfg.MODEL.RESNETS.DEPTH}-layer OXNet, {len(params['oxnet'])} tensors, {n / 1e6:.1f} M "
        f"parameters, device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {args.repeats} alternating steps (clip + Adam)",
        file=sys.stderr,
    )
    print(f"detectron2 per-parameter clipping: {med['detectron2'] * 1e3:.1f} ms")
    print(f"oxnet multi-tensor clipping:       {med['oxnet'] * 1e3:.1f} ms")
    print(
        f"ratio detectron2 / oxnet: {med['detectron2'] / med['oxnet']:.2f}x; parameters identical after "
        f"{args.repeats + 2} steps: {same}"
    )


if __name__ == "__main__":
    main()
