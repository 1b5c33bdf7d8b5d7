"""Mixed-precision training (SOLVER.AMP.ENABLED): it learns, every training guard holds, resume is exact."""

import json
import os

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage

from oxnet.data import register_omni_coco
from oxnet.engine import OXnetTrainer
from oxnet.engine.hooks import unwrap
from oxnet.testing import (
    changed_state,
    log_messages,
    step_trainer,
    tiny_cfg,
    trainer_state,
    write_toy_dataset,
)

SIZE = 64


def _dataset(tmp_path, name, **counts):
    if name not in DatasetCatalog.list():
        json_file = write_toy_dataset(str(tmp_path / name), size=SIZE, **counts)
        register_omni_coco(name, json_file, str(tmp_path / name / "images"))
    return name


def _cfg(name, out, method="oxnet", max_iter=4, amp=True):
    cfg = tiny_cfg(method, size=SIZE)
    cfg.DATASETS.TRAIN = (name,)
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 2, 2, 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 1e-3, max_iter, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.SOLVER.AMP.ENABLED = amp
    cfg.OXNET.AMP.DTYPE = "bfloat16"
    cfg.OUTPUT_DIR = str(out)
    return cfg


def _losses(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line)["total_loss"] for line in f if "total_loss" in line]


def test_bfloat16_training_learns(tmp_path):
    name = _dataset(tmp_path, "toy_amp_learn", n_full=4, n_weak=0, n_unlabeled=0)
    cfg = _cfg(name, tmp_path / "run", method="retinanet", max_iter=40)
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.OXNET.BATCH.FULL = 4
    torch.manual_seed(0)
    trainer = OXnetTrainer(cfg)
    assert unwrap(trainer.model).amp_dtype is torch.bfloat16 and trainer._trainer.grad_scaler is None
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = _losses(cfg.OUTPUT_DIR)  # detectron2 writes every 20 iterations: iterations 19 and 39
    assert len(losses) == 2 and losses[1] < 0.8 * losses[0], losses


@pytest.fixture
def amp_trainer(tmp_path):
    """A tiny bfloat16 OXnet trainer after one normal step, stepped by hand inside an EventStorage."""
    name = _dataset(tmp_path, "toy_amp_guard", n_full=4, n_weak=2, n_unlabeled=2)
    torch.manual_seed(0)
    trainer = OXnetTrainer(_cfg(name, tmp_path / "run", max_iter=100))
    trainer.resume_or_load(resume=False)
    with EventStorage(0) as trainer.storage:
        trainer.iter = trainer.start_iter = 0
        trainer.before_train()
        step_trainer(trainer)
        yield trainer


def test_nan_under_autocast_is_skipped(amp_trainer):
    trainer = amp_trainer
    head = unwrap(trainer.model).head.cls_score
    seen = []

    def poison(module, inputs, output):
        seen.append(output.dtype)
        return output * float("nan")

    before = trainer_state(trainer)
    hook = head.register_forward_hook(poison)
    with log_messages("oxnet.engine.trainer") as messages:
        step_trainer(trainer)
    hook.remove()
    assert torch.bfloat16 in seen  # the NaN was made inside the autocast region
    assert changed_state(before, trainer_state(trainer)) == []
    assert trainer._trainer.nonfinite_streak == 1
    assert any("loss not finite (loss_cls = nan" in m for m in messages), messages
    step_trainer(trainer)  # the next step trains again
    assert trainer._trainer.nonfinite_streak == 0
    assert "student.head.cls_score.weight" in changed_state(before, trainer_state(trainer))


def test_nonfinite_gradient_is_skipped(amp_trainer):
    """A finite loss whose gradient is not (here: a hook on the class logits) skips the step too."""
    trainer = amp_trainer
    head = unwrap(trainer.model).head.cls_score

    def poison_grad(module, inputs, output):
        output.register_hook(lambda g: g * float("inf"))

    before = trainer_state(trainer)
    hook = head.register_forward_hook(poison_grad)
    with log_messages("oxnet.engine.trainer") as messages:
        step_trainer(trainer)
    hook.remove()
    assert changed_state(before, trainer_state(trainer)) == []  # weights, prototypes, teacher, optimizer
    assert trainer._trainer.nonfinite_streak == 1 and trainer._trainer.last_step_skipped
    assert any("gradient not finite (backbone." in m and "more): step skipped" in m for m in messages), (
        messages
    )


def test_gradient_scaler_skip_is_not_a_nonfinite_skip(amp_trainer):
    """float16's gradient scaler (here on the CPU, with the bfloat16 model: the logic is the same):
    an overflow in the scaled gradients skips the optimizer step and halves the scale, without
    counting as a non-finite step; the scaler's state is checkpointed."""
    trainer = amp_trainer
    step = trainer._trainer
    step.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    step_trainer(trainer)  # a normal scaled step
    assert not step.last_scaler_skip and step.grad_scaler.get_scale() == 2.0**10
    head = unwrap(trainer.model).head.cls_score

    def poison_grad(module, inputs, output):
        output.register_hook(lambda g: g * float("inf"))

    hook = head.register_forward_hook(poison_grad)
    student = {k: v.clone() for k, v in unwrap(trainer.model).state_dict().items()}
    step_trainer(trainer)
    hook.remove()
    assert step.last_scaler_skip and step.scaler_skips == 1 and step.nonfinite_streak == 0
    assert step.grad_scaler.get_scale() == 2.0**9
    params = dict(unwrap(trainer.model).named_parameters())
    assert all(torch.equal(student[k], p) for k, p in params.items())  # the optimizer did not step
    state = trainer.state_dict()["_trainer"]
    assert state["grad_scaler"]["scale"] == 2.0**9
    fresh = torch.amp.GradScaler("cpu")
    step.grad_scaler = fresh
    step.load_state_dict(state)
    assert fresh.get_scale() == 2.0**9


def test_resume_under_bfloat16_is_bit_exact(tmp_path):
    name = _dataset(tmp_path, "toy_amp_resume", n_full=4, n_weak=3, n_unlabeled=3)
    torch.manual_seed(0)
    straight = OXnetTrainer(_cfg(name, tmp_path / "straight"))
    straight.resume_or_load(resume=False)
    straight.train()
    expected = trainer_state(straight)

    torch.manual_seed(0)
    first = OXnetTrainer(_cfg(name, tmp_path / "resumed", max_iter=2))
    first.resume_or_load(resume=False)
    first.train()
    torch.manual_seed(123)  # everything must come from the checkpoint
    second = OXnetTrainer(_cfg(name, tmp_path / "resumed"))
    second.resume_or_load(resume=True)
    assert second.start_iter == 2
    second.train()
    got = trainer_state(second)
    for part in ("student", "teacher"):
        for k, v in expected[part].items():
            assert torch.equal(v, got[part][k]), (part, k)
    assert changed_state(expected, got) == []
    # bfloat16 really trained: the weights differ from a float32 run's
    torch.manual_seed(0)
    fp32 = OXnetTrainer(_cfg(name, tmp_path / "fp32", amp=False))
    fp32.resume_or_load(resume=False)
    fp32.train()
    assert not torch.equal(
        trainer_state(fp32)["student"]["head.cls_score.weight"], expected["student"]["head.cls_score.weight"]
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 mixed precision needs a CUDA GPU")
def test_float16_on_cuda_trains_with_a_gradient_scaler(tmp_path):
    name = _dataset(tmp_path, "toy_amp_fp16", n_full=4, n_weak=2, n_unlabeled=2)
    cfg = _cfg(name, tmp_path / "run", max_iter=4)
    cfg.MODEL.DEVICE = "cuda"
    cfg.OXNET.AMP.DTYPE = "float16"
    trainer = OXnetTrainer(cfg)
    assert isinstance(trainer._trainer.grad_scaler, torch.amp.GradScaler)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert "grad_scaler" in trainer.state_dict()["_trainer"]
