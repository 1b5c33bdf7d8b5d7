"""The omni-supervised trainer: detectron2's ``DefaultTrainer`` with three data streams, the mean
teacher, Adam, and OXnet's evaluation."""

import hashlib
import logging
import os
import signal
import threading
import time
import weakref

import torch
import torch.distributed as dist
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model, hooks
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from oxnet.data.loader import OmniBatches, OmniTrainLoader, split_by_supervision
from oxnet.data.mapper import OmniDatasetMapper
from oxnet.methods import method_components, uses_teacher
from oxnet.modeling.precision import dtype_name

from .checkpoint import AtomicCheckpointer
from .clipping import add_gradient_clipping
from .hooks import MeanTeacherHook, PlateauLRHook, unwrap
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
    return {
        level: sum(c.get(level, 0) for c in counts) if sizes[level] > 0 else 0
        for level in ("full", "weak", "unlabeled")
    }


class NonFiniteLossError(FloatingPointError):
    """Training stopped: a loss term was NaN or infinite in too many steps in a row.

    ``terms`` names the terms of the last such step, ``iteration`` is its iteration and
    ``checkpoint`` the checkpoint saved when training stopped (None before it is saved)."""

    def __init__(self, message, terms, iteration):
        super().__init__(message)
        self.terms, self.iteration, self.checkpoint = list(terms), iteration, None


class TrainingPreempted(BaseException):
    """Raised inside :meth:`OXnetTrainer.train` after a stop signal: a checkpoint was saved at the end
    of the step. Not an ``Exception``, so that detectron2 does not log it as a failure; ``train``
    catches it."""


def _put_scalars(**values):
    """Log scalars to the current EventStorage, unsmoothed; nothing outside one (a step run by hand)."""
    from detectron2.utils.events import get_event_storage

    try:
        storage = get_event_storage()
    except AssertionError:
        return
    for name, value in values.items():
        storage.put_scalar(name, value, smoothing_hint=False)


def _distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class OmniStepTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose step first lets the mean teacher label the weak/unlabeled images, and
    that skips steps whose loss is not finite.

    A step in which any loss term is NaN or infinite (on any process) changes nothing: no backward
    pass, no optimizer step, the model's buffers (GPA prototypes, loss normalizers, normalization
    statistics) are restored to their values before the forward pass, and ``last_step_skipped`` tells
    the mean teacher not to update. The terms are logged; after ``max_nonfinite_skips`` such steps in
    a row, :class:`NonFiniteLossError` names the terms and the iteration.

    With a ``grad_scaler`` (float16 mixed precision) the loss is scaled before the backward pass and
    ``grad_scaler.step`` unscales the gradients before the optimizer (and its gradient clipping) sees
    them. A step whose loss is finite but whose scaled gradients overflow is the scaler's business,
    not a non-finite step: the scaler skips the optimizer step and lowers its scale, the streak of
    non-finite steps is untouched, ``last_scaler_skip`` is set and ``amp/scaler_skipped`` counts it.
    The scaler's state is part of :meth:`state_dict`, so that a resumed run scales as the original.
    """

    def __init__(
        self, model, data_loader, optimizer, teacher_hook=None, max_nonfinite_skips=5, grad_scaler=None
    ):
        super().__init__(model, data_loader, optimizer)
        self.teacher_hook = teacher_hook
        self.max_nonfinite_skips = max_nonfinite_skips
        self.grad_scaler = grad_scaler
        self.nonfinite_streak = 0  # skipped steps in a row
        self.last_step_skipped = False
        self.last_scaler_skip = False
        self.scaler_skips = 0

    def run_step(self):
        assert self.model.training, "[OmniStepTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.teacher_hook is not None:
            self.teacher_hook.attach_soft_targets(data, self.iter)
        buffers = {name: b.detach().clone() for name, b in unwrap(self.model).named_buffers()}
        loss_dict = self.model(data)
        bad = self._nonfinite_terms(loss_dict)
        self.last_step_skipped = bool(bad)
        if bad:
            self._skip_step("loss", bad, self._loss_values(loss_dict, bad), buffers)
            return
        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        if self.grad_scaler is None:
            losses.backward()
            bad = self._nonfinite_gradients()
            self.last_step_skipped = bool(bad)
            if bad:
                more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
                self._skip_step("gradient", bad, ", ".join(bad[:3]) + more, buffers)
                return
            self.nonfinite_streak = 0
            self._write_metrics(loss_dict, data_time)
            self.optimizer.step()
            return
        self.nonfinite_streak = 0
        scale = self.grad_scaler.get_scale()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        # unscale first: gradient clipping (inside the optimizer's step) needs the true gradients, also
        # with a fused optimizer, to which the scaler would otherwise hand the scale
        self.grad_scaler.unscale_(self.optimizer)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.last_scaler_skip = self.grad_scaler.get_scale() < scale  # the scale drops only on a skip
        self.scaler_skips += int(self.last_scaler_skip)
        if self.last_scaler_skip:
            logger.info(
                f"Iteration {self.iter}: float16 gradients overflowed; the gradient scaler skipped the step"
            )
        _put_scalars(
            **{"amp/grad_scale": self.grad_scaler.get_scale(), "amp/scaler_skipped": self.scaler_skips}
        )

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])

    def _nonfinite_terms(self, loss_dict):
        """Names of the loss terms that are not finite on this process or any other."""
        names = sorted(loss_dict)
        if not names:
            return []
        finite = torch.stack([torch.isfinite(loss_dict[k].detach()).all() for k in names]).to(torch.int32)
        if _distributed():
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return [k for k, ok in zip(names, finite.tolist()) if not ok]

    @torch.no_grad()
    def _nonfinite_gradients(self):
        """Names of the parameters whose gradient has a NaN or infinite entry (after DDP's all-reduce
        every process sees the same gradients). A finite loss can still give such a gradient: an
        operation whose derivative is infinite at the point (a square root at 0), or a kernel that
        returns garbage (PyTorch 2.14's oneDNN bfloat16 weight gradient of a stride-2 convolution on
        a 1x1 input, which OXNet avoids by running P6/P7 in float32, see
        :class:`oxnet.modeling.precision.Float32LastLevelP6P7`)."""
        named = [(n, p.grad) for n, p in unwrap(self.model).named_parameters() if p.grad is not None]
        if not named:
            return []
        norms = torch._foreach_norm([g for _, g in named])
        finite = torch.isfinite(torch.stack(norms)).tolist()
        return [n for (n, _), ok in zip(named, finite) if not ok]

    @staticmethod
    def _loss_values(loss_dict, bad):
        local = {k: loss_dict[k].detach().float().cpu() for k in bad}
        return ", ".join(
            f"{k} = {v.item():g}"
            if v.numel() == 1 and not torch.isfinite(v).all()
            else f"{k} on {'this' if not torch.isfinite(v).all() else 'another'} process"
            for k, v in local.items()
        )

    @torch.no_grad()
    def _skip_step(self, kind, bad, values, buffers):
        """Undo a step whose ``kind`` ("loss" or "gradient") is not finite for the names ``bad``."""
        for name, b in unwrap(self.model).named_buffers():  # undo the forward pass's updates (Eq. 5 ...)
            if name in buffers:
                b.copy_(buffers[name])
        self.optimizer.zero_grad()
        self.nonfinite_streak += 1
        limit = self.max_nonfinite_skips
        logger.warning(
            f"Iteration {self.iter}: {kind} not finite ({values}): step skipped, weights, "
            f"optimizer, teacher and GPA prototypes unchanged ({self.nonfinite_streak} such "
            f"step(s) in a row; training stops at {limit}, OXNET.SOLVER.MAX_NONFINITE_SKIPS)"
        )
        _put_scalars(nonfinite_skipped_steps=self.nonfinite_streak)
        if self.nonfinite_streak >= max(limit, 1):
            what = "loss term(s)" if kind == "loss" else "gradient(s) of"
            raise NonFiniteLossError(
                f"{what} {', '.join(bad)} not finite at iteration {self.iter} ({values}), "
                f"{self.nonfinite_streak} step(s) in a row skipped "
                f"(OXNET.SOLVER.MAX_NONFINITE_SKIPS = {limit})",
                bad,
                self.iter,
            )


class _StopSignals:
    """While active (in the main thread), SIGTERM and SIGINT only set ``received`` (the signal's
    name); the previous handlers are restored on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is None:
            logger.warning(
                f"{name} received: training will save a checkpoint at the end of this step and stop"
            )
        self.received = self.received or name

    def __enter__(self):
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class OXnetTrainer(DefaultTrainer):
    """Trains any method of :mod:`oxnet.methods`.

    Differences from ``DefaultTrainer``: the data loader is :class:`oxnet.data.loader.OmniTrainLoader`
    (three streams, batch sizes ``OXNET.BATCH.*``, resumable to the exact batch); methods with the
    a teacher-based unsupervised loss (``oxnet.methods.TEACHER_LOSSES``) get a :class:`MeanTeacherHook`
    whose teacher is checkpointed; the optimizer is
    Adam by default; DDP works on CPU (gloo) too; evaluation uses :class:`oxnet.evaluation.OXnetEvaluator`.
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ is not called, on purpose: in detectron2 v0.6 it (1) wraps the model
        # with create_ddp_model(device_ids=[local rank]), which DDP refuses for CPU models (gloo runs
        # here); (2) builds AMPTrainer under SOLVER.AMP.ENABLED, which asserts CUDA and autocasts the
        # whole forward, losses included (OXNet autocasts only its network pass, on CPUs too);
        # (3) builds a non-atomic DetectionCheckpointer without the mean teacher. Everything else it
        # does is done here in the same order, through the same build_* class methods.
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
            self.teacher_hook = MeanTeacherHook(
                model,
                cfg.OXNET.TEACHER.EMA_DECAY,
                views=views,
                noise_std=cfg.OXNET.MMT_PSM.NOISE_STD,
                buffers=cfg.OXNET.TEACHER.BUFFERS,
            )
        amp_dtype = getattr(model, "amp_dtype", None)
        logger.info(f"Training precision: {dtype_name(amp_dtype)}" + (" mixed" if amp_dtype else ""))
        # float16 needs a gradient scaler; bfloat16 has float32's range and does not
        grad_scaler = torch.amp.GradScaler(model.device.type) if amp_dtype is torch.float16 else None
        ddp_kwargs = {} if model.device.type == "cuda" else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        self._trainer = OmniStepTrainer(
            model,
            self._train_loader,
            optimizer,
            self.teacher_hook,
            max_nonfinite_skips=cfg.OXNET.SOLVER.MAX_NONFINITE_SKIPS,
            grad_scaler=grad_scaler,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        extra = {"teacher": self.teacher_hook.teacher_checkpointable()} if self.teacher_hook else {}
        # MODEL.WEIGHTS is named by the user: detectron2 .pkl weights are read (numpy arrays only).
        self.checkpointer = AtomicCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), allow_pickle=True, **extra
        )
        self.preempted = None  # the signal's name after a stop signal ended training early
        self._stop_signals = _StopSignals()
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        """Resume the run in OUTPUT_DIR (weights, teacher, prototypes, optimizer, scheduler,
        iteration and data position), or start from MODEL.WEIGHTS with the teacher equal to it.
        A new run first loads OXNET.BACKBONE.PRETRAINED into the backbone (MODEL.WEIGHTS loads over it)."""
        if self.cfg.OXNET.BACKBONE.PRETRAINED and not (resume and self.checkpointer.has_checkpoint()):
            from oxnet.modeling.pretrained import load_pretrained_backbone

            load_pretrained_backbone(unwrap(self.model), self.cfg)
        checkpoint = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        resumed = resume and self.checkpointer.has_checkpoint()
        if resumed:
            self.start_iter = self.iter + 1
        if self.teacher_hook is not None and not (resumed and self.teacher_hook.restored):
            self.teacher_hook.copy_from(self.model)
        self._train_loader.start_iter = self.start_iter
        return checkpoint

    def train(self):
        """Train from ``start_iter`` to ``MAX_ITER``; returns the last evaluation's results.

        SIGTERM or SIGINT (preemption, Ctrl-C) during training ends it at the end of the current
        step, after a checkpoint (``model_{iter}.pth``, tagged as the last) is saved: ``train``
        then returns None with ``preempted`` set to the signal's name, and ``resume_or_load(True)``
        continues exactly where the run stopped. Under DDP every process stops at the same step.
        At the end, each process logs a fingerprint of its weights, teacher and prototypes
        (:func:`state_fingerprints`) and a warning if the processes disagree."""
        with self._stop_signals:
            try:
                result = super().train()
            except TrainingPreempted as e:
                self.preempted = self._stop_signals.received or "signal"
                logger.warning(str(e))
                return None
        self._log_fingerprints()
        return result

    def after_step(self):
        super().after_step()
        if self.iter + 1 < self.max_iter and self._stop_requested():
            path = self._save_checkpoint(f"model_{self.iter:07d}")
            where = f"saved to {path}" if path else "saved by the main process"
            raise TrainingPreempted(
                f"{self._stop_signals.received or 'a stop signal on another process'}: "
                f"training stopped after iteration {self.iter}; checkpoint {where}. "
                "Continue the run with --resume (resume_or_load(resume=True))"
            )

    def run_step(self):
        self._trainer.iter = self.iter
        try:
            self._trainer.run_step()
        except NonFiniteLossError as e:
            e.checkpoint = self._save_checkpoint(f"model_nonfinite_{self.iter:07d}")
            if e.checkpoint:
                e.args = (f"{e.args[0]}; the weights of the last finite step are saved in {e.checkpoint}",)
            raise

    def _stop_requested(self):
        flag = self._stop_signals.received is not None
        if _distributed():
            t = torch.tensor([int(flag)], device=unwrap(self.model).device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _save_checkpoint(self, name):
        """Save a checkpoint of the state after ``self.iter`` (the main process writes it); its path."""
        self.checkpointer.save(name, iteration=self.iter)
        if comm.is_main_process() and self.checkpointer.save_dir:
            return os.path.join(self.checkpointer.save_dir, f"{name}.pth")
        return None

    def _log_fingerprints(self):
        prints = state_fingerprints(self.model, self.teacher_hook.teacher if self.teacher_hook else None)
        logger.info(
            f"Final state on rank {comm.get_rank()}: "
            + ", ".join(f"{k} sha256 {v}" for k, v in prints.items())
        )
        if comm.get_world_size() > 1:
            everyone = comm.all_gather(prints)
            differ = [k for k in prints if len({p[k] for p in everyone}) > 1]
            if differ:
                logger.warning(f"The processes ended with different {', '.join(differ)}")

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
            ret.insert(
                eval_pos + 1, PlateauLRHook(self.scheduler, s.PLATEAU_METRIC, patience, s.PLATEAU_FACTOR)
            )
        return ret

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """detectron2's scheduler; with ``OXNET.SOLVER.STEP_FRACTIONS`` its steps are those fractions
        of ``SOLVER.MAX_ITER`` (:func:`lr_steps`)."""
        if cfg.OXNET.SOLVER.STEP_FRACTIONS:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.SOLVER.STEPS = lr_steps(cfg)
        return super().build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_optimizer(cls, cfg, model):
        params = get_default_optimizer_params(
            model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM
        )
        name = cfg.OXNET.SOLVER.OPTIMIZER.upper()
        if name == "ADAM":
            optim = add_gradient_clipping(cfg, torch.optim.Adam)
            fused = {"fused": True} if cfg.OXNET.SOLVER.FUSED else {}
            return optim(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, **fused)
        if name == "SGD":
            optim = add_gradient_clipping(cfg, torch.optim.SGD)
            return optim(
                params,
                lr=cfg.SOLVER.BASE_LR,
                momentum=cfg.SOLVER.MOMENTUM,
                nesterov=cfg.SOLVER.NESTEROV,
                weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            )
        raise ValueError(f"OXNET.SOLVER.OPTIMIZER must be ADAM or SGD, got {cfg.OXNET.SOLVER.OPTIMIZER!r}")

    @classmethod
    def build_train_loader(cls, cfg):
        names = cfg.DATASETS.TRAIN
        if not names:
            raise ValueError(
                "DATASETS.TRAIN is empty: register OXnet-COCO datasets (OXNET.DATASETS) and name them"
            )
        dicts = [d for name in names for d in DatasetCatalog.get(name)]
        streams = split_by_supervision(dicts)
        sizes = used_streams(cfg)
        for name, n in sizes.items():
            if n > 0 and not streams[name]:
                logger.warning(
                    f"OXNET.BATCH.{name.upper()}={n} but {names} has no {name} images: stream skipped"
                )
        logger.info(
            "Training streams: "
            + ", ".join(f"{k}: {len(v)} images, batch {sizes[k]}" for k, v in streams.items())
        )
        seed = cfg.SEED if cfg.SEED >= 0 else 0
        batches = OmniBatches(
            streams,
            sizes,
            OmniDatasetMapper(cfg, is_train=True),
            seed=seed,
            rank=comm.get_rank(),
            world_size=comm.get_world_size(),
            max_failed_fraction=cfg.OXNET.DATA.MAX_FAILED_FRACTION,
        )
        return OmniTrainLoader(batches, num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            DatasetCatalog.get(dataset_name),
            mapper=OmniDatasetMapper(cfg, is_train=False),
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        from oxnet.evaluation import OXnetEvaluator

        # Not OUTPUT_DIR itself: its metrics.json is detectron2's training log (JSONWriter).
        out = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return OXnetEvaluator(
            dataset_name, output_dir=out, method=cfg.OXNET.METHOD, training_counts=training_counts(cfg)
        )


def lr_steps(cfg):
    """The LR steps: ``SOLVER.STEPS``, or ``OXNET.SOLVER.STEP_FRACTIONS`` of ``SOLVER.MAX_ITER``
    (rounded down; steps outside (0, MAX_ITER) dropped; the authors' ``(21/55, 46/55)``: 1e-5 for 21
    of 55 epochs, 1e-6 for 25, 1e-7 for 9)."""
    fractions = tuple(float(f) for f in cfg.OXNET.SOLVER.STEP_FRACTIONS)
    if not fractions:
        return tuple(cfg.SOLVER.STEPS)
    if any(not 0 < f < 1 for f in fractions) or list(fractions) != sorted(fractions):
        raise ValueError(f"OXNET.SOLVER.STEP_FRACTIONS must increase within (0, 1), got {fractions}")
    steps = (int(f * cfg.SOLVER.MAX_ITER) for f in fractions)
    return tuple(sorted({s for s in steps if 0 < s < cfg.SOLVER.MAX_ITER}))


def _digest(named_tensors):
    h = hashlib.sha256()
    for name, t in sorted(named_tensors):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def state_fingerprints(model, teacher=None):
    """Short SHA-256 digests of a model's parameters (``weights``), its GPA prototypes
    (``prototypes``, when it has them) and the teacher's parameters and buffers (``teacher``), for
    checking that processes or runs ended in exactly the same state."""
    model = unwrap(model)
    ret = {"weights": _digest(model.named_parameters())}
    protos = [(n, b) for n, b in model.named_buffers() if n.startswith("prototypes.")]
    if protos:
        ret["prototypes"] = _digest(protos)
    if teacher is not None:
        ret["teacher"] = _digest(list(teacher.named_parameters()) + list(teacher.named_buffers()))
    return ret
