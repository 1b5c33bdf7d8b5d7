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
    code = ("import sys, PIL.Image; import detectron2.data.transforms, detectron2.engine; "
            "assert 'oxnet' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.sep)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_pillow_alias_patch_is_targeted_and_idempotent(tmp_path):
    installer = _load("tools/install_detectron2.py", "install_detectron2_under_test")
    pkg = tmp_path / "detectron2"
    (pkg / "data").mkdir(parents=True)
    uses = pkg / "data" / "transform.py"
    uses.write_text("from PIL import Image\n"
                    "def f(interp=Image.LINEAR, other=Image.BILINEAR, cv=INTER_LINEAR):\n"
                    "    return PIL.Image.LINEAR\n")
    clean = pkg / "clean.py"
    clean.write_text("from PIL import Image\nx = Image.BILINEAR\n")
    (pkg / "notes.txt").write_text("Image.LINEAR\n")
    before = clean.stat().st_mtime_ns

    assert installer.patch_pillow_alias(pkg) == [str(uses)]
    assert uses.read_text() == ("from PIL import Image\n"
                                "def f(interp=Image.BILINEAR, other=Image.BILINEAR, cv=INTER_LINEAR):\n"
                                "    return PIL.Image.BILINEAR\n")
    assert clean.stat().st_mtime_ns == before
    assert (pkg / "notes.txt").read_text() == "Image.LINEAR\n"
    assert installer.patch_pillow_alias(pkg) == []
