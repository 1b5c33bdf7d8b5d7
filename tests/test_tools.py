"""The command-line tools under tools/ and train_net.py."""

import importlib.util
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_detectron2_imports_without_oxnet():
    """The installed detectron2 imports in a fresh interpreter, Pillow >= 10 and no oxnet shim."""
    code = (
        "import sys, PIL.Image; import detectron2.data.transforms, detectron2.engine; "
        "assert 'oxnet' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.sep)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_pillow_alias_patch_is_targeted_and_idempotent(tmp_path):
    installer = _load("tools/install_detectron2.py", "install_detectron2_under_test")
    pkg = tmp_path / "detectron2"
    (pkg / "data").mkdir(parents=True)
    uses = pkg / "data" / "transform.py"
    uses.write_text(
        "from PIL import Image\n"
        "def f(interp=Image.LINEAR, other=Image.BILINEAR, cv=INTER_LINEAR):\n"
        "    return PIL.Image.LINEAR\n"
    )
    clean = pkg / "clean.py"
    clean.write_text("from PIL import Image\nx = Image.BILINEAR\n")
    (pkg / "notes.txt").write_text("Image.LINEAR\n")
    before = clean.stat().st_mtime_ns

    assert installer.patch_pillow_alias(pkg) == [str(uses)]
    assert uses.read_text() == (
        "from PIL import Image\n"
        "def f(interp=Image.BILINEAR, other=Image.BILINEAR, cv=INTER_LINEAR):\n"
        "    return PIL.Image.BILINEAR\n"
    )
    assert clean.stat().st_mtime_ns == before
    assert (pkg / "notes.txt").read_text() == "Image.LINEAR\n"
    assert installer.patch_pillow_alias(pkg) == []


def test_train_net_lists_the_methods(capsys):
    import pytest

    from oxnet.methods import method_names

    train_net = _load("train_net.py", "train_net_under_test")
    with pytest.raises(SystemExit) as exit_info:
        train_net.parse_args(["--list-methods"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "OXNET.METHOD",
        "global",
        "head",
        "GPA",
        "loss",
        "on",
        "images",
        "without",
        "boxes",
        "weak",
        "negatives",
        "(not",
        "in",
        "the",
        "paper)",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert list(rows) == method_names()
    assert rows["oxnet"] == ["DAA", "GPA", "SFL", "(mean", "teacher)", "-"]
    assert rows["retinanet"] == ["-", "-", "-", "-"]
    assert rows["retinanet_neg"] == ["-", "-", "-", "focal", "loss,", "target", "0"]
    assert rows["focalmix_mt"] == ["GAP", "(+MT)", "-", "FocalMix", "-"]
    args = train_net.parse_args(["--config-file", "x.yaml", "OXNET.METHOD", "daa"])
    assert args.opts == ["OXNET.METHOD", "daa"]


def test_train_net_help_points_to_oxnet_options(capsys):
    import pytest

    train_net = _load("train_net.py", "train_net_help_under_test")
    with pytest.raises(SystemExit):
        train_net.parse_args(["--help"])
    text = capsys.readouterr().out
    for needle in ("Train or evaluate OXnet", "OXNET.METHOD", "docs/config.md", "--list-methods"):
        assert needle in text


def test_config_docs_are_up_to_date():
    gen = _load("tools/gen_config_docs.py", "gen_config_docs_under_test")
    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert gen.render() == committed, "docs/config.md is out of date: run python tools/gen_config_docs.py"


def test_config_docs_give_every_key_a_default_and_meaning():
    from oxnet.methods import method_names

    gen = _load("tools/gen_config_docs.py", "gen_config_docs_keys_under_test")
    text = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    rows = {
        line.split(" | ")[0][3:-1]: line.split(" | ")[1:]
        for line in text.splitlines()
        if line.startswith("| `OXNET.")
    }
    defaults = gen.config_defaults()
    assert len(defaults) > 40 and set(defaults) <= set(rows)
    for key, value in defaults.items():
        default, meaning = rows[key]
        assert default == f"`{value!r}`" and meaning.strip(" |-"), key
    assert all(f"| `{m}` |" in text for m in method_names())


def test_config_comments_become_descriptions():
    gen = _load("tools/gen_config_docs.py", "gen_config_docs_parse_under_test")
    source = """
def add_oxnet_config(cfg):
    _C = cfg
    _C.OXNET = CN()
    # Section text.
    _C.OXNET.A = CN()
    # Above B,
    # two lines.
    _C.OXNET.A.B = 1  # beside B
    _C.OXNET.A.C = "x#y"

    # Not D's (a blank line follows).

    _C.OXNET.D = (1,
                  2)  # beside D's second line
"""
    keys = gen.parse_config_source(source)
    assert gen.methods_doc().startswith('A method is a global head ("" none, "gap": GAP + sigmoid')
    assert keys == [
        ("OXNET", "", True),
        ("OXNET.A", "Section text.", True),
        ("OXNET.A.B", "Above B, two lines. beside B", False),
        ("OXNET.A.C", "", False),
        ("OXNET.D", "beside D's second line", False),
    ]


def test_every_phony_make_target_has_a_rule():
    import re

    text = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()
    rules = set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))
    assert "bench" in phony and not set(phony) - rules


def test_make_bench_runs_the_synthetic_table1():
    import shutil

    import pytest

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n: print the commands without running them; -o: take the venv stamp as up to date
    # (without the calling make's variables: under `make test` a nested make reports its directory)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.oxnet-installed", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        ".venv/bin/python -m oxnet.bench table1 --data synthetic --out output/bench/synthetic"
    )


def test_license_is_apache_2():
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190


def test_demo_logs_the_model_structure_at_debug():
    import logging

    from detectron2.config import get_cfg
    from detectron2.engine import DefaultTrainer

    import oxnet.modeling  # noqa: F401  (registers the OXNet meta-architecture)
    from oxnet.config import add_oxnet_config

    demo = _load("tools/demo.py", "demo_under_test")
    demo.log_model_at_debug()
    demo.log_model_at_debug()  # installed once
    logger = logging.getLogger("detectron2.engine.defaults")
    assert sum(isinstance(f, demo.ModelDumpAtDebug) for f in logger.filters) == 1

    records = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        cfg = get_cfg()
        add_oxnet_config(cfg)
        cfg.merge_from_file(str(REPO / "configs" / "demo_cpu.yaml"))
        cfg.OXNET.METHOD = "retinanet"  # the smallest model of the demo's size
        DefaultTrainer.build_model(cfg)  # what OXnetTrainer does when it is built
        logger.info("Evaluation results: kept at INFO")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    dumps = [r for r in records if r.getMessage().startswith("Model:\nOXNet(")]
    assert len(dumps) == 1 and dumps[0].levelno == logging.DEBUG and dumps[0].levelname == "DEBUG"
    assert [r.levelno for r in records if r.getMessage().startswith("Evaluation")] == [logging.INFO]


def test_demo_keeps_only_the_final_checkpoint(tmp_path):
    demo = _load("tools/demo.py", "demo_checkpoints_under_test")
    for name in ("model_0000099.pth", "model_0000199.pth", "last_checkpoint", "metrics.json"):
        (tmp_path / name).write_text(name)
    assert demo.remove_intermediate_checkpoints(tmp_path) == []  # training not finished: resumable
    assert len(list(tmp_path.glob("*.pth"))) == 2
    (tmp_path / "model_final.pth").write_text("final")
    deleted = demo.remove_intermediate_checkpoints(tmp_path)
    assert [os.path.basename(p) for p in deleted] == ["model_0000099.pth", "model_0000199.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last_checkpoint",
        "metrics.json",
        "model_final.pth",
    ]
