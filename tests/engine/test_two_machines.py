"""``train_net.py --num-machines 2`` as two separate processes (gloo on the CPU): both ranks end in the
same state (also after a NaN loss on one of them), and a rank whose peer dies fails within a bounded
time instead of hanging."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from oxnet.testing import REPO_ROOT, free_port, toy_run_config

TRAIN_NET = os.path.join(REPO_ROOT, "train_net.py")
DRIVER = os.path.join(REPO_ROOT, "tests", "engine", "_train_driver.py")  # train_net.py with faults
FINAL = re.compile(r"Final state on rank (\d): (.*)")


def start_ranks(config, out_dir, port, timeout_s, script=TRAIN_NET, **env_vars):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env_vars)
    procs = []
    for rank in (0, 1):
        with open(out_dir.parent / f"{out_dir.name}.rank{rank}.out", "w") as log:  # the child keeps its copy
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        script,
                        "--config-file",
                        config,
                        "--num-machines",
                        "2",
                        "--machine-rank",
                        str(rank),
                        "--dist-url",
                        f"tcp://127.0.0.1:{port}",
                        "--dist-timeout",
                        str(timeout_s),
                        "OUTPUT_DIR",
                        str(out_dir),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=REPO_ROOT,
                    start_new_session=True,
                )
            )
    return procs


def rank_log(out_dir, rank):
    path = out_dir / ("log.txt" if rank == 0 else f"log.txt.rank{rank}")
    return path.read_text() if path.exists() else ""


def output(out_dir, rank):
    return (out_dir.parent / f"{out_dir.name}.rank{rank}.out").read_text()


def kill(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_two_machines_end_identical(tmp_path):
    """Three steps; in the second, the GPA loss is NaN on rank 1 only: both ranks skip it."""
    config = toy_run_config(tmp_path, 3, n_unlabeled=4, seed=3, name="run3.yaml")  # ranks seed 3 + rank
    out = tmp_path / "run"
    procs = start_ranks(
        config, out, free_port(), timeout_s=60, script=DRIVER, OXNET_TEST_NAN="1:1:loss_gpa_intra"
    )
    try:
        for rank, p in enumerate(procs):
            rc = p.wait(timeout=300)
            assert rc == 0, f"rank {rank} exit {rc}:\n{output(out, rank)[-4000:]}"
    finally:
        kill(procs)
    prints = {}
    for rank in (0, 1):
        found = FINAL.findall(rank_log(out, rank))
        assert len(found) == 1 and int(found[0][0]) == rank, rank_log(out, rank)[-2000:]
        prints[rank] = dict(re.findall(r"(\w+) sha256 ([0-9a-f]+)", found[0][1]))
    assert set(prints[0]) == {"weights", "teacher", "prototypes"}
    assert prints[0] == prints[1]
    assert "ended with different" not in rank_log(out, 0) + rank_log(out, 1)
    assert "Iteration 1: loss not finite (loss_gpa_intra on another process)" in rank_log(out, 0)
    assert "Iteration 1: loss not finite (loss_gpa_intra = nan)" in rank_log(out, 1)
    assert (out / "model_final.pth").exists()


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_rank_whose_peer_dies_fails_in_bounded_time(tmp_path, fault):
    """SIGKILL: the peer's machine dies (its connections close); SIGSTOP: it hangs (only the
    ``--dist-timeout`` of 8 s ends the wait)."""
    config = toy_run_config(tmp_path, 100000, n_unlabeled=4, seed=3, name="run100000.yaml")
    out = tmp_path / "run"
    procs = start_ranks(config, out, free_port(), timeout_s=8)
    try:
        deadline = time.monotonic() + 240
        while not all("Starting training" in rank_log(out, r) for r in (0, 1)):
            for rank, p in enumerate(procs):
                assert p.poll() is None, f"rank {rank} ended early:\n{output(out, rank)[-4000:]}"
            assert time.monotonic() < deadline, "the ranks did not start training"
            time.sleep(0.1)
        time.sleep(1.0)  # a few steps in
        assert procs[0].poll() is None
        os.killpg(procs[1].pid, getattr(signal, fault))
        killed = time.monotonic()
        try:
            rc = procs[0].wait(timeout=90)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"rank 0 still runs 90 s after {fault} to its peer:\n{output(out, 0)[-3000:]}"
            ) from e
        waited = time.monotonic() - killed
        assert rc != 0, output(out, 0)[-3000:]
        assert waited < 60, waited
        text = output(out, 0)
        if fault == "SIGSTOP":
            assert "Timed out" in text, text[-3000:]  # only the timeout could end this wait
        else:
            assert "by peer" in text or "Timed out" in text, text[-3000:]
    finally:
        kill(procs)
