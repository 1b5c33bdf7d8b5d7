"""The omni-supervised trainer: detectron2's ``DefaultTrainer`` with three data streams, the mean
teacher, Adam, and OXnet's evaluation."""
import logging
import os
import time
import weakref

import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from oxnet.config import method_components, uses_teacher
from oxnet.data.loader import OmniBatches, OmniTrainLoader, split_by_supervision
from oxnet.data.mapper import OmniDatasetMapper

from .checkpoint import AtomicCheckpointer
from .clipping import add_gradient_clipping
from .hooks import MeanTeacherHook, PlateauLRHook
from .model_files import save_run_config

logger = logging.getLogger(__name__)


def used_streams(cfg):
    """Batch size per stream for the configured method; streams the method cannot use get 0.

    Weak images serve methods with image labels (a global head or weak negatives) or an unsupervised
    loss (as images without boxes); unlabeled images serve methods with an unsupervised loss."""
    parts = method_components(cfg.OXNET.METHOD)
    b = cfg.OXNET.BATCH
    return {
        "full": b.FULL,
        "weak": b.WEAK if (parts["global_head"] or parts["unsup"] or parts["weak_negatives"]) else 0,
        "unlabeled": b.UNLABELED if parts["unsup"] else 0,
    }


_LEVEL_COUNTS = {}  # (dataset name, json file) -> {level: images}: read once, not at every evaluation


def _level_counts(name):
    from detectron2.data import MetadataCatalog

    key = (name, MetadataCatalog.get(name).get("json_file", None))
    if key not in _LEVEL_COUNTS:
        _LEVEL_COUNTS[key] = {k: len(v) for k, v in split_by_supervision(DatasetCatalog.get(name)).items()}
    return _LEVEL_COUNTS[key]


def training_counts(cfg):
    """Training images per supervision level that the method uses ({"full", "weak", "unlabeled"}),
    for the report's Table 1 row; None when the training sets are not registered."""
    names = [n for n in cfg.DATASETS.TRAIN if n in DatasetCatalog.list()]
    if not names or len(names) != len(cfg.DATASETS.TRAIN):
        return None
    counts = [_level_counts(n) for n in names]
    sizes = used_streams(cfg)
    return {level: sum(c.get(level, 0) for c in counts) if sizes[level] > 0 else 0
            for level in ("full", "weak", "unlabeled")}


class OmniStepTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose step first lets the mean teacher label the weak/unlabeled images."""

    def __init__(self, model, data_loader, optimizer, teacher_hook=None):
        super().__init__(model, data_loader, optimizer)
        self.teacher_hook = teacher_hook

    def run_step(self):
        assert self.model.training, "[OmniStepTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.teacher_hook is not None:
            self.teacher_hook.attach_soft_targets(data, self.iter)
        loss_dict = self.model(data)
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


class OXnetTrainer(DefaultTrainer):
    """Trains any method of :data:`oxnet.config.METHODS`.

    Differences from ``DefaultTrainer``: the data loader is :class:`oxnet.data.loader.OmniTrainLoader`
    (three streams, batch sizes ``OXNET.BATCH.*``, resumable to the exact batch); methods with the
    a teacher-based unsupervised loss (``oxnet.config.TEACHER_LOSSES``) get a :class:`MeanTeacherHook`
    whose teacher is checkpointed; the optimizer is
    Adam by default; DDP works on CPU (gloo) too; evaluation uses :class:`oxnet.evaluation.OXnetEvaluator`.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        self.cfg = cfg
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            save_run_config(cfg, cfg.OUTPUT_DIR)  # the model's config and classes beside its weights
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        self._train_loader = self.build_train_loader(cfg)
        self.teacher_hook = None
        if uses_teacher(cfg.OXNET.METHOD):
            mmt = method_components(cfg.OXNET.METHOD)["unsup"] == "mmt_psm"
            views = cfg.OXNET.MMT_PSM.VIEWS if mmt else 1
            self.teacher_hook = MeanTeacherHook(model, cfg.OXNET.TEACHER.EMA_DECAY, views=views,
                                                noise_std=cfg.OXNET.MMT_PSM.NOISE_STD)
        ddp_kwargs = {} if model.device.type == "cuda" else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        self._trainer = OmniStepTrainer(model, self._train_loader, optimizer, self.teacher_hook)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        extra = {"teacher": self.teacher_hook.teacher_checkpointable()} if self.teacher_hook else {}
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), **extra)
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        """Resume the run in OUTPUT_DIR (weights, teacher, prototypes, optimizer, scheduler,
        iteration and data position), or start from MODEL.WEIGHTS with the teacher equal to it."""
        checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        resumed = resume and self.checkpointer.has_checkpoint()
        if resumed:
            self.start_iter = self.iter + 1
        if self.teacher_hook is not None and not (resumed and self.teacher_hook.restored):
            self.teacher_hook.copy_from(self.model)
        self._train_loader.start_iter = self.start_iter
        return checkpoint

    def state_dict(self):
        # detectron2 v0.6's DefaultTrainer leaves the optimizer out of checkpoints; keep it.
        ret = TrainerBase.state_dict(self)
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        TrainerBase.load_state_dict(self, state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    def build_hooks(self):
        ret = super().build_hooks()
        if self.teacher_hook is not None:
            ret.insert(2, self.teacher_hook)  # after the LR scheduler, before checkpointing
        patience = self.cfg.OXNET.SOLVER.PLATEAU_PATIENCE
        if patience > 0:
            s = self.cfg.OXNET.SOLVER
            eval_pos = next(i for i, h in enumerate(ret) if isinstance(h, hooks.EvalHook))
            ret.insert(eval_pos + 1, PlateauLRHook(self.scheduler, s.PLATEAU_METRIC, patience, s.PLATEAU_FACTOR))
        return ret

    @classmethod
    def build_optimizer(cls, cfg, model):
        params = get_default_optimizer_params(model, base_lr=cfg.SOLVER.BASE_LR,
                                              weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM)
        name = cfg.OXNET.SOLVER.OPTIMIZER.upper()
        if name == "ADAM":
            optim = add_gradient_clipping(cfg, torch.optim.Adam)
            return optim(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        if name == "SGD":
            optim = add_gradient_clipping(cfg, torch.optim.SGD)
            return optim(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
                         nesterov=cfg.SOLVER.NESTEROV, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        raise ValueError(f"OXNET.SOLVER.OPTIMIZER must be ADAM or SGD, got {cfg.OXNET.SOLVER.OPTIMIZER!r}")

    @classmethod
    def build_train_loader(cls, cfg):
        names = cfg.DATASETS.TRAIN
        if not names:
            raise ValueError("DATASETS.TRAIN is empty: register OXnet-COCO datasets (OXNET.DATASETS) and name them")
        dicts = [d for name in names for d in DatasetCatalog.get(name)]
        streams = split_by_supervision(dicts)
        sizes = used_streams(cfg)
        for name, n in sizes.items():
            if n > 0 and not streams[name]:
                logger.warning(f"OXNET.BATCH.{name.upper()}={n} but {names} has no {name} images: stream skipped")
        logger.info("Training streams: " + ", ".join(f"{k}: {len(v)} images, batch {sizes[k]}" for k, v in streams.items()))
        seed = cfg.SEED if cfg.SEED >= 0 else 0
        batches = OmniBatches(streams, sizes, OmniDatasetMapper(cfg, is_train=True), seed=seed,
                              rank=comm.get_rank(), world_size=comm.get_world_size())
        return OmniTrainLoader(batches, num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(DatasetCatalog.get(dataset_name),
                                           mapper=OmniDatasetMapper(cfg, is_train=False),
                                           num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        from oxnet.evaluation import OXnetEvaluator

        # Not OUTPUT_DIR itself: its metrics.json is detectron2's training log (JSONWriter).
        out = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return OXnetEvaluator(dataset_name, output_dir=out, method=cfg.OXNET.METHOD,
                              training_counts=training_counts(cfg))
