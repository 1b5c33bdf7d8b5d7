"""``OXNET.WARM_START``: one ``train_net.py`` command trains the RetinaNet stage, then starts OXnet's
student and mean teacher from it (the authors' train_retinanet.py, then train_oxnet.py)."""

import importlib.util
import os

import torch
from detectron2.config import get_cfg

from oxnet.config import add_oxnet_config
from oxnet.engine import OXnetTrainer
from oxnet.engine.hooks import unwrap
from oxnet.engine.warm_start import STAGE_DIR, train_warm_start
from oxnet.testing import REPO_ROOT, toy_run_config


def _train_net():
    spec = importlib.util.spec_from_file_location("train_net_warm", os.path.join(REPO_ROOT, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(path):
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(path)
    return cfg


def test_one_command_trains_the_stage_then_starts_student_and_teacher_from_it(tmp_path):
    run_yaml = toy_run_config(tmp_path, max_iter=2)
    stage = _load(run_yaml)
    stage.OXNET.METHOD, stage.SOLVER.MAX_ITER = "retinanet", 3
    stage.OUTPUT_DIR = str(tmp_path / "ignored")  # the stage runs inside the run's folder
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "stage.yaml").write_text(stage.dump())
    run = _load(run_yaml)
    run.OXNET.WARM_START = "stage.yaml"  # beside the run's config file
    run.OUTPUT_DIR = str(tmp_path / "run")
    main_yaml = tmp_path / "configs" / "run.yaml"
    main_yaml.write_text(run.dump())

    train_net = _train_net()
    train_net.main(train_net.parse_args(["--config-file", str(main_yaml)]))
    weights = tmp_path / "run" / STAGE_DIR / "model_final.pth"
    assert weights.exists() and (tmp_path / "run" / "model_final.pth").exists()
    assert not (tmp_path / "ignored").exists()
    stage_state = torch.load(weights, map_location="cpu", weights_only=False)["model"]
    assert not any(k.startswith("global_head") for k in stage_state)  # a RetinaNet

    # a second start reuses the stage; the student and the teacher both start from its weights
    mtime = os.path.getmtime(weights)
    cfg = train_warm_start(_load(str(main_yaml)), str(main_yaml))
    assert os.path.getmtime(weights) == mtime and str(weights) == cfg.MODEL.WEIGHTS
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    student = unwrap(trainer.model).state_dict()
    teacher = trainer.teacher_hook.teacher.state_dict()
    shared = [k for k in stage_state if k in student]
    assert len(shared) == len(stage_state) and any(k.startswith("global_head") for k in student)
    for k in shared:
        assert torch.equal(student[k], stage_state[k]) and torch.equal(teacher[k], stage_state[k]), k
