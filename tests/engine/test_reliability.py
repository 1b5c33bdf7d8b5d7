"""Faults during training and loading: non-finite losses, stop signals, a full disk, weights files that
would run code."""

import errno
import os
import pickle
import signal

import numpy as np
import pytest
import torch
from detectron2.utils.events import EventStorage

from oxnet.engine.checkpoint import AtomicCheckpointer, CheckpointWriteError
from oxnet.engine.hooks import unwrap
from oxnet.engine.model_files import StrictCheckpointer
from oxnet.engine.trainer import NonFiniteLossError, _StopSignals
from oxnet.testing import (
    changed_state,
    log_messages,
    step_trainer,
    tiny_cfg,
    trainer_state,
    write_toy_dataset,
)
from oxnet.utils.safe_load import UnsafeWeightsError, load_weights_file

#: The loss terms of the tiny OXnet model (the fixture checks that these are exactly its terms).
OXNET_LOSSES = [
    "loss_box_reg",
    "loss_cls",
    "loss_global",
    "loss_gpa_inter",
    "loss_gpa_intra",
    "loss_sfl",
    "loss_weak_negative",
]


@pytest.fixture()
def records():
    with log_messages("oxnet.engine.trainer", "oxnet.utils.safe_load") as messages:
        yield messages


def _toy_trainer(root, max_iter=1000):
    from detectron2.data import DatasetCatalog

    from oxnet.data import register_omni_coco
    from oxnet.engine import OXnetTrainer

    json_file = write_toy_dataset(str(root / "data"), n_full=4, n_weak=4, n_unlabeled=2)
    name = "reliability_" + root.name
    if name not in DatasetCatalog.list():
        register_omni_coco(name, json_file, str(root / "data" / "images"))
    cfg = tiny_cfg("oxnet_neg")  # OXnet with weak negatives: every loss term the trainer can meet
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 2, 2, 2
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 1e-3, max_iter, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.TEST.EVAL_PERIOD = 0
    cfg.OUTPUT_DIR = str(root / "out")
    torch.manual_seed(0)
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    return trainer


@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """A tiny OXnet trainer after one normal step, stepped by hand inside an EventStorage."""
    trainer = _toy_trainer(tmp_path_factory.mktemp("nonfinite"))
    names = []
    model = unwrap(trainer.model)
    forward = model.forward

    def record(data):
        out = forward(data)
        names.append(sorted(out))
        return out

    model.forward = record
    with EventStorage(0) as trainer.storage:
        trainer.iter = trainer.start_iter = 0
        trainer.before_train()
        step_trainer(trainer)
        del model.forward
        assert names == [OXNET_LOSSES]
        yield trainer


def _inject(monkeypatch, trainer, term, value, from_iter=0):
    model = unwrap(trainer.model)
    forward = model.forward

    def poisoned(data):
        out = forward(data)
        if trainer.iter >= from_iter:
            out[term] = out[term] * value  # after the forward pass: the prototypes were already updated
        return out

    monkeypatch.setattr(model, "forward", poisoned)


@pytest.mark.parametrize(
    "term,value", [(t, float("nan")) for t in OXNET_LOSSES] + [("loss_cls", float("inf"))]
)
def test_nonfinite_loss_term_skips_the_step(stepped, monkeypatch, records, term, value):
    trainer = stepped
    before = trainer_state(trainer)
    _inject(monkeypatch, trainer, term, value)
    it = trainer.iter
    step_trainer(trainer)
    assert (
        changed_state(before, trainer_state(trainer)) == []
    )  # weights, prototypes, teacher, optimizer untouched
    assert trainer._trainer.nonfinite_streak == 1
    warning = [m for m in records if "not finite" in m]
    assert len(warning) == 1 and term in warning[0] and f"Iteration {it}" in warning[0]
    assert not any(t in warning[0] for t in OXNET_LOSSES if t != term)

    # The next normal step trains again, prototypes and teacher included, and ends the streak.
    monkeypatch.undo()
    step_trainer(trainer)
    changed = changed_state(before, trainer_state(trainer))
    assert "student.prototypes.prototypes" in changed
    assert "student.head.cls_score.weight" in changed and "teacher.head.cls_score.weight" in changed
    assert any(c.startswith("optimizer.") for c in changed)
    assert trainer._trainer.nonfinite_streak == 0


def test_nonfinite_steps_in_a_row_save_a_checkpoint_and_stop(stepped, monkeypatch):
    trainer = stepped
    trainer._trainer.max_nonfinite_skips = 2
    before = trainer_state(trainer)
    start = trainer.iter
    _inject(monkeypatch, trainer, "loss_gpa_intra", float("nan"))
    try:
        step_trainer(trainer)  # skipped
        expected = f"loss_gpa_intra not finite at iteration {start + 1}"
        with pytest.raises(NonFiniteLossError, match=expected) as info:
            step_trainer(trainer)  # skipped, the second in a row: stop
    finally:
        trainer._trainer.max_nonfinite_skips = 5
        trainer._trainer.nonfinite_streak = 0
    err = info.value
    assert err.terms == ["loss_gpa_intra"] and err.iteration == start + 1
    name = f"model_nonfinite_{start + 1:07d}.pth"
    assert err.checkpoint == os.path.join(trainer.cfg.OUTPUT_DIR, name) and name in str(err)
    with open(os.path.join(trainer.cfg.OUTPUT_DIR, "last_checkpoint")) as f:
        assert f.read() == name
    # The project's own checkpoint loads with weights_only=True and holds the last finite state.
    ckpt = torch.load(err.checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == start + 1 and ckpt["trainer"]["iteration"] == start + 1
    assert ckpt["trainer"]["_trainer"]["optimizer"]["state"]
    assert "hooks" in ckpt["trainer"]
    for k, v in before["student"].items():
        assert torch.equal(ckpt["model"][k], v), k
    for k, v in before["teacher"].items():
        assert torch.equal(ckpt["teacher"][k], v), k
    assert ckpt["model"]["prototypes.initialized"].any()


def test_stop_signals_only_set_a_flag():
    previous = signal.getsignal(signal.SIGINT)
    with _StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal neither aborts nor renames it
        assert stop.received == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is previous


# ---------------------------------------------------------------------------------- full disk


def _linear(value):
    model = torch.nn.Linear(4, 2)
    torch.nn.init.constant_(model.weight, value)
    return model


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where):
    ckpt = AtomicCheckpointer(_linear(1.0), str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    if where == "write":

        def partial_write(obj, f, *args, **kwargs):
            f.write(b"PK\x03\x04" + bytes(4096))  # some bytes reached the disk, then it was full
            _disk_full()

        monkeypatch.setattr(torch, "save", partial_write)
    else:
        monkeypatch.setattr(os, "fsync", _disk_full)
    ckpt.model.weight.data.fill_(2.0)
    with pytest.raises(CheckpointWriteError) as info:
        ckpt.save("model_0000002", iteration=2)
    monkeypatch.undo()
    msg = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert "model_0000002.pth" in msg and "disk is full" in msg and "model_0000001.pth" in msg
    # no temporary file left, the previous checkpoint and its tag untouched
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    other = _linear(0.0)
    assert AtomicCheckpointer(other, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
    assert torch.equal(other.weight, torch.ones(2, 4))


# ---------------------------------------------------------------------------------- untrusted weights


class _RunsCode:
    """Unpickling this calls ``os.system("touch MARKER")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(path, marker):
    payload = {"model": {"weight": torch.ones(2, 4), "bias": torch.zeros(2)}, "extra": _RunsCode(marker)}
    if str(path).endswith(".pkl"):
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    else:
        torch.save(payload, path)
    return str(path)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_crafted_weights_file_is_refused_and_runs_nothing(tmp_path, suffix):
    # The file is effective: loading it the unsafe way runs the command.
    control = tmp_path / "control_ran"
    unsafe = _crafted(tmp_path / f"control{suffix}", control)
    if suffix == ".pkl":
        with open(unsafe, "rb") as f:
            pickle.load(f)
    else:
        torch.load(unsafe, weights_only=False)
    assert control.exists()

    marker = tmp_path / "payload_ran"
    path = _crafted(tmp_path / f"weights{suffix}", marker)
    loaders = [
        lambda: load_weights_file(path, allow_pickle=True),
        lambda: AtomicCheckpointer(_linear(0.0), allow_pickle=True).load(path),
        lambda: StrictCheckpointer(_linear(0.0), allow_pickle=True).load(path),
        lambda: StrictCheckpointer(_linear(0.0)).load(path),
    ]
    for load in loaders:
        with pytest.raises(UnsafeWeightsError, match="refused|not loaded here") as info:
            load()
        assert path in str(info.value)
    assert not marker.exists()


def test_pickle_weights_only_where_allowed_with_a_warning(tmp_path, records):
    path = str(tmp_path / "model_zoo.pkl")
    with open(path, "wb") as f:  # a detectron2 model-zoo file: numpy arrays in plain dicts
        pickle.dump(
            {
                "model": {"weight": np.full((2, 4), 3.0, np.float32), "bias": np.zeros(2, np.float32)},
                "__author__": "test",
            },
            f,
        )
    with pytest.raises(UnsafeWeightsError, match="not loaded here"):
        StrictCheckpointer(_linear(0.0)).load(path)  # the default, and the prediction service's
    assert not any("pickle" in m for m in records)
    model = _linear(0.0)
    StrictCheckpointer(model, allow_pickle=True).load(path)
    assert torch.equal(model.weight, torch.full((2, 4), 3.0))
    assert any(path in m and "trust" in m for m in records)


def test_prediction_service_model_never_loads_pickles(tmp_path):
    from oxnet.engine.predictor import OXnetPredictor

    marker = tmp_path / "payload_ran"
    path = _crafted(tmp_path / "model_final.pkl", marker)
    cfg = tiny_cfg("oxnet")
    (tmp_path / "config.yaml").write_text(cfg.dump())
    with pytest.raises(UnsafeWeightsError, match="not loaded here"):
        OXnetPredictor.from_weights(path)
    assert not marker.exists()


def test_plateau_state_loads_with_weights_only(tmp_path):
    from types import SimpleNamespace

    from oxnet.engine.hooks import PlateauLRHook

    hook = PlateauLRHook(scheduler=None, metric="bbox/mAP", patience=3)
    latest = {"bbox/mAP": (np.float64(0.25), 9)}  # a metric written as a numpy scalar
    hook.trainer = SimpleNamespace(storage=SimpleNamespace(latest=lambda: latest))
    hook.after_step()
    torch.save({"hooks": {"PlateauLRHook": hook.state_dict()}}, tmp_path / "ckpt.pth")
    state = torch.load(tmp_path / "ckpt.pth", weights_only=True)["hooks"]["PlateauLRHook"]
    assert state == {"best": 0.25, "bad_evals": 0, "last_seen_iter": 9}
