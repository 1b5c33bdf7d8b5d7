"""Training hooks: the mean teacher (Sec. 2.3) and the LR drop on a validation plateau (Sec. 2.4)."""

import copy
import logging

import torch
from detectron2.engine import HookBase

from oxnet.modeling.meta_arch import SOFT_TARGET_LEVELS

logger = logging.getLogger(__name__)


def unwrap(model):
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


class MeanTeacherHook(HookBase):
    """Keeps the mean teacher: ``theta~ <- lambda_t theta~ + (1 - lambda_t) theta`` after every step.

    ``lambda_t = min(1 - 1 / (t + 1), lambda)`` (Tarvainen & Valpola's warm-up; t is the 0-based
    iteration, so after the first step the teacher equals the student), as the authors'
    ``update_ema_variables`` (``train_oxnet.py`` l.35-40). Floating-point parameters are averaged;
    with ``buffers="copy"`` (``OXNET.TEACHER.BUFFERS``, the default) buffers (GPA prototypes and
    their flags, loss normalizers, pixel statistics, any normalization statistics) are copied from
    the student, since an average of them is meaningless; with ``"keep"`` the teacher keeps the
    buffers it started with, as the authors' code (parameters only).
    The teacher stays in eval mode and never requires gradients; it is saved in checkpoints as
    ``teacher``.

    With ``views > 1`` (MMT-PSM's self-ensemble), the teacher also sees ``views - 1`` copies of the
    weak view with Gaussian noise of ``noise_std`` grey levels; ``teacher_probs`` is then the mean
    over the views and ``teacher_std`` their standard deviation (the perturbation sensitivity).
    """

    BUFFER_MODES = ("copy", "keep")

    def __init__(self, student, decay=0.99, views=1, noise_std=0.0, buffers="copy"):
        if views < 1:
            raise ValueError(f"the teacher needs at least one view, got {views}")
        if buffers not in self.BUFFER_MODES:
            raise ValueError(f"OXNET.TEACHER.BUFFERS must be one of {self.BUFFER_MODES}, got {buffers!r}")
        self.decay, self.buffers = decay, buffers
        self.views, self.noise_std = views, noise_std
        self.teacher = copy.deepcopy(unwrap(student))
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.restored = False  # set when a checkpoint's teacher was loaded

    def state_dict(self):
        # Saved by the checkpointer under "teacher" (see OXnetTrainer), not among the hooks' states.
        return {}

    def teacher_checkpointable(self):
        """An object for ``Checkpointer(..., teacher=...)`` that notes when the teacher is restored."""
        hook = self

        class _Teacher:
            def state_dict(self):
                return hook.teacher.state_dict()

            def load_state_dict(self, state):
                hook.teacher.load_state_dict(state)
                hook.restored = True

        return _Teacher()

    @torch.no_grad()
    def copy_from(self, student):
        """Make the teacher an exact copy of the student (start of a new run)."""
        self.teacher.load_state_dict(unwrap(student).state_dict())

    @torch.no_grad()
    def update(self, student, iteration):
        lam = min(1.0 - 1.0 / (iteration + 1), self.decay)
        student = unwrap(student)
        for t, s in zip(self.teacher.parameters(), student.parameters()):
            t.mul_(lam).add_(s.detach(), alpha=1.0 - lam)
        if self.buffers == "copy":
            for t, s in zip(self.teacher.buffers(), student.buffers()):
                t.copy_(s)
        return lam

    @torch.no_grad()
    def attach_soft_targets(self, batch, iteration=0):
        """Add the teacher's dense probabilities on the weak view (``teacher_probs``, and with several
        views ``teacher_std``; for filtered SFL its detections ``teacher_boxes`` (n, 4) in the input
        frame and ``teacher_classes`` (n,)) to weak and unlabeled images of a training batch. The noise of the
        extra views is drawn from a generator seeded by ``iteration``, so resumed runs repeat it."""
        soft = [x for x in batch if x.get("supervision") in SOFT_TARGET_LEVELS]
        if not soft:
            return
        self.teacher.eval()
        if getattr(self.teacher, "needs_teacher_boxes", False):  # filtered SFL: also its detections
            probs, detections = self.teacher.teacher_outputs(soft, image_key="image_weak")
            for x, det in zip(soft, detections):
                x["teacher_boxes"] = det.pred_boxes.tensor
                x["teacher_classes"] = det.pred_classes
        else:
            probs = self.teacher.dense_probs(soft, image_key="image_weak")
        if self.views > 1:
            gen = torch.Generator().manual_seed(int(iteration))
            all_probs = [probs]
            for _ in range(self.views - 1):
                noisy = [
                    {
                        "image": (
                            x["image_weak"]
                            + self.noise_std * torch.randn(x["image_weak"].shape, generator=gen)
                        ).clamp(0, 255)
                    }
                    for x in soft
                ]
                all_probs.append(self.teacher.dense_probs(noisy))
            stacked = torch.stack(all_probs)
            probs, spread = stacked.mean(0), stacked.std(0)
            for x, s in zip(soft, spread):
                x["teacher_std"] = s
        for x, p in zip(soft, probs):
            x["teacher_probs"] = p

    def after_step(self):
        step = getattr(self.trainer, "_trainer", self.trainer)
        if getattr(step, "last_step_skipped", False):  # a non-finite loss: the student did not change
            return
        lam = self.update(self.trainer.model, self.trainer.iter)
        self.trainer.storage.put_scalar("teacher_ema", lam, smoothing_hint=False)


class PlateauLRHook(HookBase):
    """Divide the learning rate by ``1 / factor`` when the validation metric has not improved for
    ``patience`` evaluations ("divided by ten when validation mAP stagnate", Sec. 2.4).

    It scales the LR scheduler's base learning rates, so warm-up and any step schedule still apply.
    Register it after the evaluation hook; its state is checkpointed.
    """

    def __init__(self, scheduler, metric="bbox/mAP", patience=3, factor=0.1):
        self.scheduler, self.metric, self.patience, self.factor = scheduler, metric, patience, factor
        self.best, self.bad_evals, self._last_seen_iter = None, 0, -1

    def after_step(self):
        latest = self.trainer.storage.latest()
        if self.metric not in latest:
            return
        value, it = latest[self.metric]
        if it == self._last_seen_iter:
            return
        self._last_seen_iter = it
        if self.best is None or value > self.best:
            self.best, self.bad_evals = value, 0
            return
        self.bad_evals += 1
        if self.bad_evals >= self.patience:
            self.scheduler.base_lrs = [lr * self.factor for lr in self.scheduler.base_lrs]
            self.bad_evals = 0
            logger.info(
                f"{self.metric} has not improved on {self.best:.4f} for {self.patience} "
                f"evaluations: learning rate x {self.factor}"
            )

    def state_dict(self):
        # Plain Python numbers (not numpy scalars), so that torch.load(weights_only=True) reads them.
        best = None if self.best is None else float(self.best)
        return {"best": best, "bad_evals": int(self.bad_evals), "last_seen_iter": int(self._last_seen_iter)}

    def load_state_dict(self, state):
        self.best, self.bad_evals = state["best"], state["bad_evals"]
        self._last_seen_iter = state["last_seen_iter"]
