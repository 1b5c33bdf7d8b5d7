import os

import pytest
import torch

from oxnet.engine.checkpoint import AtomicCheckpointer


class _Killed(BaseException):
    pass


def _model(value):
    model = torch.nn.Linear(4, 2)
    torch.nn.init.constant_(model.weight, value)
    return model


def test_save_writes_checkpoint_and_tag(tmp_path):
    ckpt = AtomicCheckpointer(_model(1.0), str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    other = _model(0.0)
    extra = AtomicCheckpointer(other, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    assert torch.equal(other.weight, torch.ones(2, 4))
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]


def test_killed_save_leaves_no_partial_file_and_resumes_from_previous(tmp_path, monkeypatch):
    ckpt = AtomicCheckpointer(_model(1.0), str(tmp_path))
    ckpt.save("model_0000001")
    real_save = torch.save

    def killed_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial")  # the first bytes of a checkpoint, then the job dies
        raise _Killed()

    monkeypatch.setattr(torch, "save", killed_midway)
    ckpt.model.weight.data.fill_(2.0)
    with pytest.raises(_Killed):
        ckpt.save("model_0000002")
    monkeypatch.setattr(torch, "save", real_save)

    # Neither the half-written checkpoint nor its temporary file is left, and the tag is unchanged.
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    other = _model(0.0)
    AtomicCheckpointer(other, str(tmp_path)).resume_or_load("", resume=True)
    assert torch.equal(other.weight, torch.ones(2, 4))
