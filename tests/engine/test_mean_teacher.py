"""The mean teacher's EMA (Sec. 2.3) over several steps, against the authors' ``update_ema_variables``
(LLYXC/OXnet ``train_oxnet.py`` l.35-40, called after every optimizer step with the step count):
``alpha = min(1 - 1 / (step + 1), 0.99)``, ``ema = alpha * ema + (1 - alpha) * param`` for the
parameters only."""

import pytest
import torch
from torch import nn

from oxnet.engine.hooks import MeanTeacherHook


def _student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _train_step(student, step):
    g = torch.Generator().manual_seed(100 + step)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    student.train()
    student(torch.randn(8, 3, generator=g))  # moves BatchNorm's running statistics (buffers)


@pytest.mark.parametrize("buffers", ["copy", "keep"])
def test_teacher_follows_the_authors_ema_over_steps(buffers):
    student = _student()
    hook = MeanTeacherHook(student, decay=0.99, buffers=buffers)
    initial_buffers = [b.clone() for b in hook.teacher.buffers()]
    theirs = [p.detach().double().clone() for p in student.parameters()]  # the copy made at start
    alphas = []
    for step in range(5):
        _train_step(student, step)
        lam = hook.update(student, step)
        alpha = min(1 - 1 / (step + 1), 0.99)
        alphas.append(alpha)
        theirs = [alpha * e + (1 - alpha) * p.detach().double() for e, p in zip(theirs, student.parameters())]
        assert lam == pytest.approx(alpha)
        for t, e in zip(hook.teacher.parameters(), theirs):
            assert torch.allclose(t.double(), e, atol=1e-6)
    assert alphas[0] == 0.0 and alphas[1] == 0.5 and alphas[4] == pytest.approx(0.8)
    # step 0 copies the student; later steps lag behind it
    assert not torch.allclose(hook.teacher[0].weight, student[0].weight)
    for t, s, b0 in zip(hook.teacher.buffers(), student.buffers(), initial_buffers):
        if buffers == "copy":
            assert torch.equal(t, s)
        else:  # the authors' EMA touches parameters only: the teacher's buffers stay as they started
            assert torch.equal(t, b0)
    assert not torch.equal(student[1].running_mean, initial_buffers[0])


def test_a_decay_below_the_warm_up_caps_it():
    student = _student()
    hook = MeanTeacherHook(student, decay=0.5)
    assert [hook.update(student, t) for t in range(4)] == [0.0, 0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="OXNET.TEACHER.BUFFERS"):
        MeanTeacherHook(student, buffers="average")
