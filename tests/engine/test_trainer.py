import os

import torch
from detectron2.data import DatasetCatalog

from oxnet.data import register_omni_coco
from oxnet.engine import OXnetTrainer
from oxnet.engine.hooks import unwrap
from oxnet.testing import tiny_cfg, write_toy_dataset


def _cfg(tmp_path, name, out, max_iter=4):
    cfg = tiny_cfg("oxnet")
    cfg.DATASETS.TRAIN = (name,)
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 2, 2, 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.BASE_LR = 1e-3
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = ()
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 2
    cfg.OUTPUT_DIR = str(out)
    return cfg


def _state(trainer):
    return {
        "model": {k: v.clone() for k, v in unwrap(trainer.model).state_dict().items()},
        "teacher": {k: v.clone() for k, v in trainer.teacher_hook.teacher.state_dict().items()},
    }


def _assert_same(a, b):
    """Bit for bit: a resumed run must not even round differently."""
    for part in ("model", "teacher"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            diff = (a[part][k].float() - b[part][k].float()).abs().max().item()
            assert torch.equal(a[part][k], b[part][k]), (part, k, diff)


def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    json_file = write_toy_dataset(str(tmp_path / "data"), n_full=4, n_weak=3, n_unlabeled=3)
    name = "toy_resume_train"
    if name not in DatasetCatalog.list():
        register_omni_coco(name, json_file, str(tmp_path / "data" / "images"))

    torch.manual_seed(0)
    straight = OXnetTrainer(_cfg(tmp_path, name, tmp_path / "straight"))
    straight.resume_or_load(resume=False)
    straight.train()
    expected = _state(straight)

    torch.manual_seed(0)
    first = OXnetTrainer(_cfg(tmp_path, name, tmp_path / "resumed", max_iter=2))  # "killed" after 2
    first.resume_or_load(resume=False)
    first.train()
    assert os.path.exists(tmp_path / "resumed" / "last_checkpoint")

    torch.manual_seed(123)  # a different seed: everything must come from the checkpoint
    second = OXnetTrainer(_cfg(tmp_path, name, tmp_path / "resumed", max_iter=4))
    second.resume_or_load(resume=True)
    assert second.start_iter == 2
    second.train()
    got = _state(second)
    _assert_same(expected, got)
    assert got["model"]["prototypes.initialized"].any()
    # the teacher is a real average, not a copy of the student
    diffs = [(got["model"][k] - got["teacher"][k]).abs().max() for k in got["model"] if k.endswith("weight")]
    assert max(diffs) > 0


def test_step_fractions_give_the_authors_schedule():
    """OXNET.SOLVER.STEP_FRACTIONS (21/55, 46/55): with one "epoch" per iteration of a 55-iteration run
    the LR is 1e-5 for iterations 0-20, 1e-6 for 21-45 and 1e-7 for 46-54, as the authors' epochs
    (train_oxnet.py l.316-323); SOLVER.STEPS is ignored; bad fractions are refused."""
    import pytest

    from oxnet.engine.trainer import lr_steps

    cfg = tiny_cfg("oxnet")
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS = 1e-5, 55, 0
    cfg.SOLVER.STEPS = (5,)
    cfg.OXNET.SOLVER.STEP_FRACTIONS = (21 / 55, 46 / 55)
    assert lr_steps(cfg) == (21, 46)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    scheduler = OXnetTrainer.build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(55):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    want = [1e-5] * 21 + [1e-6] * 25 + [1e-7] * 9
    assert lrs == pytest.approx(want, rel=1e-9)
    cfg.OXNET.SOLVER.STEP_FRACTIONS = ()
    assert lr_steps(cfg) == (5,)
    cfg.OXNET.SOLVER.STEP_FRACTIONS = (0.8, 0.3)
    with pytest.raises(ValueError, match="STEP_FRACTIONS"):
        lr_steps(cfg)
