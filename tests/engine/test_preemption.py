"""A real training process stopped by SIGTERM saves a checkpoint and exits 0; resuming it ends bit for
bit where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time

import torch

from oxnet.testing import REPO_ROOT, toy_run_config

DRIVER = os.path.join(REPO_ROOT, "tests", "engine", "_train_driver.py")
MAX_ITER = 5
PAUSE_AT = 2


def start(config, out_dir, log, *extra, pause_at=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("OXNET_TEST_PAUSE_AT", None)
    if pause_at is not None:
        env["OXNET_TEST_PAUSE_AT"] = str(pause_at)
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, DRIVER, "--config-file", config, *extra, "OUTPUT_DIR", str(out_dir)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
        )


def wait_for(log, text, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        assert proc.poll() is None, (
            f"the process ended ({proc.returncode}) before {text!r}:\n{log.read_text()[-3000:]}"
        )
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()[-3000:]}")


def finish(proc, log, timeout=240):
    rc = proc.wait(timeout=timeout)
    assert rc == 0, f"exit {rc}:\n{log.read_text()[-4000:]}"
    return log.read_text()


def test_sigterm_saves_exits_0_and_resume_ends_bit_for_bit(tmp_path):
    config = toy_run_config(tmp_path, MAX_ITER)
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    logs = {name: tmp_path / f"{name}.log" for name in ("stopped", "resumed", "whole")}
    p_stop = start(config, stopped, logs["stopped"], pause_at=PAUSE_AT)
    p_whole = start(config, whole, logs["whole"])  # the uninterrupted run, at the same time

    wait_for(logs["stopped"], f"PAUSED AT {PAUSE_AT}", p_stop)
    p_stop.send_signal(signal.SIGTERM)
    text = finish(p_stop, logs["stopped"])
    assert f"Stopped by SIGTERM after iteration {PAUSE_AT}" in text
    name = f"model_{PAUSE_AT:07d}.pth"
    assert (stopped / "last_checkpoint").read_text() == name
    assert not (stopped / "model_final.pth").exists()
    saved = torch.load(stopped / name, map_location="cpu", weights_only=True)
    assert saved["iteration"] == PAUSE_AT

    text = finish(start(config, stopped, logs["resumed"], "--resume"), logs["resumed"])
    assert f"Starting training from iteration {PAUSE_AT + 1}" in text
    finish(p_whole, logs["whole"])

    a = torch.load(stopped / "model_final.pth", map_location="cpu", weights_only=True)
    b = torch.load(whole / "model_final.pth", map_location="cpu", weights_only=True)
    assert a["iteration"] == b["iteration"] == MAX_ITER - 1
    for part in ("model", "teacher"):
        assert a[part].keys() == b[part].keys()
        differ = [k for k in a[part] if not torch.equal(a[part][k], b[part][k])]
        assert differ == [], (part, differ)
    # the run did train in between: the resumed weights are not those of the preemption checkpoint
    assert not torch.equal(a["model"]["head.cls_score.weight"], saved["model"]["head.cls_score.weight"])
