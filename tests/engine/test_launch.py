import torch

from oxnet.engine import launch
from oxnet.testing import train_toy_and_save, write_toy_dataset


def test_two_cpu_processes_train_in_lockstep(tmp_path):
    data = tmp_path / "data"
    json_file = write_toy_dataset(str(data), n_full=4, n_weak=4, n_unlabeled=4)
    out = tmp_path / "ddp"
    out.mkdir()
    launch(train_toy_and_save, 2, dist_url="auto", args=(json_file, str(data / "images"), str(out), 3))
    r0 = torch.load(out / "rank0.pth", weights_only=True)
    r1 = torch.load(out / "rank1.pth", weights_only=True)
    assert r0["iter"] == r1["iter"] == 3
    for part in ("model", "teacher"):
        for k, v in r0[part].items():
            assert torch.allclose(v.float(), r1[part][k].float(), atol=1e-6), (part, k)
    # prototypes were formed from both processes' images and agree
    assert r0["model"]["prototypes.initialized"].any()
    assert torch.equal(r0["model"]["prototypes.prototypes"], r1["model"]["prototypes.prototypes"])
