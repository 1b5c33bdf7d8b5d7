"""``python -m oxnet.bench --help`` and what a finished run's folder keeps."""

import os

import pytest
from detectron2.config import CfgNode

from oxnet.bench.__main__ import parse_args
from oxnet.bench.cleanup import prune_run
from oxnet.bench.presets import PRESETS, TABLE1_ROWS


def _help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_lists_the_rows_presets_and_what_keep_weights_keeps(capsys):
    text = _help(capsys)
    rows = text[text.index("rows (--rows):") :]
    assert all(name in rows for name in TABLE1_ROWS)
    assert "table2: setting numbers" in rows
    assert all(name in text for name in PRESETS)
    assert text.count("`") % 2 == 0  # no unclosed literal in the description
    flat = " ".join(text.split())
    assert (
        "--keep-weights keep each run's final weights (model_final.pth) and its config (config.yaml)"
    ) in flat
    assert "Without it, every run's weights are deleted" in flat


def _run_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("model_0000004.pth", "model_0000009.pth", "model_final.pth", "metrics.json"):
        (folder / name).write_text(name)
    (folder / "last_checkpoint").write_text("model_0000009.pth")
    cfg = CfgNode({"OUTPUT_DIR": str(folder), "SOLVER": CfgNode({"MAX_ITER": 10})})
    return folder, cfg


def test_keep_weights_keeps_the_final_weights_and_config_only(tmp_path):
    folder, cfg = _run_folder(tmp_path)
    deleted = prune_run(cfg, keep_weights=True)
    assert sorted(os.path.basename(p) for p in deleted) == ["model_0000004.pth", "model_0000009.pth"]
    assert sorted(os.listdir(folder)) == ["config.yaml", "last_checkpoint", "metrics.json", "model_final.pth"]
    assert (folder / "model_final.pth").read_text() == "model_final.pth"
    assert (folder / "last_checkpoint").read_text() == "model_final.pth"
    assert CfgNode.load_cfg((folder / "config.yaml").read_text()) == cfg
    # a config.yaml written by training is left as it is; pruning again changes nothing
    (folder / "config.yaml").write_text("MODEL: {}\n")
    assert prune_run(cfg, keep_weights=True) == []
    assert (folder / "config.yaml").read_text() == "MODEL: {}\n"


def test_without_keep_weights_every_checkpoint_goes(tmp_path):
    folder, cfg = _run_folder(tmp_path)
    prune_run(cfg)
    assert sorted(os.listdir(folder)) == ["metrics.json"]
