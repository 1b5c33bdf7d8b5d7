"""Small configurations and inputs for tests and benchmarks (like ``detectron2.utils.testing``).

The top layer of the package: it may import every other module (README, Layout)."""

import contextlib
import json
import logging
import os

import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

import oxnet.modeling  # noqa: F401  (registers OXNet)
from oxnet.config import add_oxnet_config
from oxnet.data.toy import write_toy_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_cfg(method="oxnet", num_classes=3, size=64):
    """A very small OXnet config (ResNet-18, 64-channel FPN, one head conv) on the CPU."""
    cfg = get_cfg()
    add_oxnet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "demo_cpu.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RETINANET.NUM_CLASSES = num_classes
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.OXNET.INPUT_SIZE = size
    cfg.OXNET.METHOD = method
    return cfg


def random_input(level, size=64, boxes=(), classes=(), labels=None, seed=0):
    """A model input dict with a random image, tagged with a supervision level."""
    g = torch.Generator().manual_seed(seed)
    d = {
        "image": torch.rand(3, size, size, generator=g) * 255,
        "supervision": level,
        "height": size,
        "width": size,
    }
    if level == "full":
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
        d["instances"] = inst
    if labels is not None:
        d["image_labels"] = torch.tensor(labels, dtype=torch.float32)
    return d


def train_toy_and_save(json_file, image_root, out_dir, max_iter=3, method="oxnet"):
    """Train the tiny config on a toy dataset (in every process of a launch) and save this
    process's student, teacher and trainer iteration to ``out_dir/rank{R}.pth``."""
    from detectron2.data import DatasetCatalog
    from detectron2.utils import comm

    from oxnet.data import register_omni_coco
    from oxnet.engine import OXnetTrainer
    from oxnet.engine.hooks import unwrap

    name = "toy_train_" + os.path.basename(os.path.normpath(out_dir))
    if name not in DatasetCatalog.list():
        register_omni_coco(name, json_file, image_root)
    cfg = tiny_cfg(method)
    cfg.DATASETS.TRAIN = (name,)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 2, 2, 2
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 1e-3, max_iter, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.OUTPUT_DIR = str(out_dir)
    torch.manual_seed(comm.get_rank())  # different initial weights: DDP must broadcast rank 0's
    trainer = OXnetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    state = {"model": unwrap(trainer.model).state_dict(), "iter": trainer.iter}
    if trainer.teacher_hook is not None:
        state["teacher"] = trainer.teacher_hook.teacher.state_dict()
    torch.save(state, os.path.join(out_dir, f"rank{comm.get_rank()}.pth"))


def toy_run_config(work_dir, max_iter, n_unlabeled=2, seed=7, name="run.yaml"):
    """A config file for ``train_net.py``: the tiny OXnet config on a toy dataset in ``work_dir/data``
    (64 px, one head conv, no loader workers, no evaluation, no periodic checkpoint); returns its path."""
    work_dir = str(work_dir)
    json_file = write_toy_dataset(os.path.join(work_dir, "data"), n_full=4, n_weak=4, n_unlabeled=n_unlabeled)
    cfg = tiny_cfg("oxnet")
    cfg.OXNET.DATASETS = (("toy_train", json_file, os.path.join(work_dir, "data", "images")),)
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("toy_train",), ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OXNET.BATCH.FULL, cfg.OXNET.BATCH.WEAK, cfg.OXNET.BATCH.UNLABELED = 2, 2, 2
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.STEPS, cfg.SOLVER.WARMUP_ITERS = 1e-3, max_iter, (), 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 10**6
    cfg.TEST.EVAL_PERIOD = 0
    cfg.SEED = seed
    path = os.path.join(work_dir, name)
    with open(path, "w") as f:
        f.write(cfg.dump())
    return path


def tiny_model_folder(
    work_dir, method="oxnet", class_names=("class0", "class1", "class2"), max_iter=3, score_shift=0.0
):
    """A trained tiny model saved as an eager model folder (``model_final.pth`` + ``config.yaml``, as
    training writes it) in ``work_dir/model``, after ``max_iter`` iterations on a toy dataset in
    ``work_dir/data``; returns the folder. ``score_shift`` is added to the classification bias so
    that the scores of a barely trained model spread over (0, 1) instead of sitting near the prior."""
    if len(class_names) != 3:
        raise ValueError(f"the tiny model has three classes, got {list(class_names)}")
    data = os.path.join(work_dir, "data")
    json_file = write_toy_dataset(data, num_classes=len(class_names))
    run = os.path.join(work_dir, "train")
    train_toy_and_save(json_file, os.path.join(data, "images"), run, max_iter=max_iter, method=method)
    state = torch.load(os.path.join(run, "rank0.pth"), map_location="cpu", weights_only=True)["model"]
    if score_shift:
        state["head.cls_score.bias"] = state["head.cls_score.bias"] + score_shift
    cfg = tiny_cfg(method, num_classes=len(class_names))
    cfg.OXNET.CLASS_NAMES = tuple(class_names)
    cfg.OXNET.CATEGORY_IDS = tuple(range(1, len(class_names) + 1))
    cfg.DATASETS.TRAIN = ("toy_train",)
    cfg.OXNET.DATASETS = (("toy_train", json_file, os.path.join(data, "images")),)
    folder = os.path.join(work_dir, "model")
    os.makedirs(folder, exist_ok=True)
    torch.save({"model": state, "iteration": max_iter}, os.path.join(folder, "model_final.pth"))
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    return folder


@contextlib.contextmanager
def log_messages(*names, level=logging.DEBUG):
    """Collect the messages of ``level`` and above logged to the loggers ``names`` while the block runs
    (a handler on each, so it works for loggers that do not propagate, as oxnet's may not)."""
    messages = []
    handler = logging.Handler(level)
    handler.emit = lambda record: messages.append(record.getMessage())
    loggers = [logging.getLogger(name) for name in names]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield messages
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def free_port():
    """A TCP port of 127.0.0.1 that is free now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, **config):
    """Serve the ASGI ``app`` with uvicorn on a free port of 127.0.0.1 in a thread (``config``: more
    ``uvicorn.Config`` options); yields the base URL without a trailing slash."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), **{"log_level": "warning", **config})
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(15)


def self_signed_certificate(folder, host="127.0.0.1"):
    """``(cert.pem, key.pem)`` of a new self-signed certificate for ``host`` (an IP address), made with
    the ``openssl`` command; None when it is not installed."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return None
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=IP:{host}", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class SlowModel:
    """A deployed model with a fixed extra delay per image, so that requests to a service pile up."""

    def __init__(self, model, seconds):
        self.model, self.seconds = model, seconds
        self.info, self.class_names, self.thresholds = model.info, model.class_names, None

    def predict(self, image):
        import time

        time.sleep(self.seconds)
        return self.model.predict(image)


def trainer_state(trainer):
    """Everything a training step may change: the student (with its GPA prototypes and normalizers),
    the mean teacher and the optimizer's state, copied."""
    import copy

    from oxnet.engine.hooks import unwrap

    return {
        "student": {k: v.clone() for k, v in unwrap(trainer.model).state_dict().items()},
        "teacher": {k: v.clone() for k, v in trainer.teacher_hook.teacher.state_dict().items()},
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()["state"]),
    }


def changed_state(before, after):
    """Names of the entries that differ between two :func:`trainer_state` results."""
    out = []
    for part in ("student", "teacher"):
        out += [f"{part}.{k}" for k, v in before[part].items() if not torch.equal(v, after[part][k])]
    for idx, st in before["optimizer"].items():
        for k, v in st.items():
            if not torch.equal(torch.as_tensor(v), torch.as_tensor(after["optimizer"][idx][k])):
                out.append(f"optimizer.{idx}.{k}")
    return out


def step_trainer(trainer):
    """One training step of ``trainer`` by hand (hooks included), inside the caller's EventStorage."""
    trainer.before_step()
    trainer.run_step()
    trainer.after_step()
    trainer.iter += 1


def read_json(path):
    """The JSON document in the file ``path`` (UTF-8)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_text(path):
    """The text of the file ``path`` (UTF-8)."""
    with open(path, encoding="utf-8") as f:
        return f.read()
