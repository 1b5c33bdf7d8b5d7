"""Install detectron2 v0.6 (pure Python) into the running interpreter's environment.

detectron2 is not published on PyPI as a wheel. The sdist ``pb1-detectron2==0.6`` carries the official
v0.6 Python sources unchanged but not the C++/CUDA sources, so a plain ``pip install`` fails in
``build_ext``. RetinaNet (and therefore OXnet) needs no compiled op: NMS and box ops come from
torchvision. This script

1. leaves a detectron2 that is already installed in place (e.g. a CUDA machine where detectron2 was
   built from source following its own instructions), unless ``--force``;
2. otherwise fetches that exact sdist with pip (``pip download --no-deps --no-build-isolation``),
   checks its SHA-256, copies the ``detectron2/`` package into site-packages and adds a
   ``detectron2/_C`` placeholder whose attributes raise a clear error;
3. in both cases makes the installed detectron2 importable with Pillow 10 or later: detectron2 v0.6
   reads ``PIL.Image.LINEAR`` at import time, an alias of ``Image.BILINEAR`` that Pillow 10 removed,
   so every ``Image.LINEAR`` in the installed sources is replaced by ``Image.BILINEAR`` (the same
   filter). Files that do not contain it are left untouched, so running the script again changes
   nothing.

Usage: ``python tools/install_detectron2.py [--force] [--sdist PATH]``.
"""

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile

SDIST = "pb1-detectron2==0.6"
SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

PLACEHOLDER = '''"""Placeholder for detectron2's compiled ops.

Installed by OXnet's tools/install_detectron2.py.
"""
_MESSAGE = (
    "this detectron2 was installed without compiled ops; install detectron2 from source for "
    "rotated boxes/deformable conv (https://detectron2.readthedocs.io/en/latest/tutorials/install.html)"
)


def get_compiler_version():
    return "none: detectron2 installed without compiled ops"


def get_cuda_version():
    return "none: detectron2 installed without compiled ops"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(_MESSAGE + f" (requested detectron2._C.{name})")
'''


#: ``Image.LINEAR`` (Pillow < 10) and the identical filter that replaces it.
PILLOW_ALIAS = re.compile(r"\bImage\.LINEAR\b")
PILLOW_REPLACEMENT = "Image.BILINEAR"


def patch_pillow_alias(package_dir):
    """Replace ``Image.LINEAR`` by ``Image.BILINEAR`` in the ``.py`` files under ``package_dir``.

    Only files containing ``Image.LINEAR`` are rewritten (atomically); return their paths.
    """
    patched = []
    for root, dirs, files in os.walk(package_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            new = PILLOW_ALIAS.sub(PILLOW_REPLACEMENT, text)
            if new == text:
                continue
            tmp = path + ".oxnet-tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(new)
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
            patched.append(path)
    return patched


def installed_package_dir():
    """The folder of the installed ``detectron2`` package, or None (found without importing it)."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def fix_installed(package_dir):
    """Apply :func:`patch_pillow_alias` to an installed detectron2 and say what changed."""
    try:
        patched = patch_pillow_alias(package_dir)
    except OSError as e:
        print(
            f"warning: cannot patch {package_dir} ({e}); with Pillow 10 or later, import oxnet before "
            "detectron2 (it restores Image.LINEAR)",
            file=sys.stderr,
        )
        return []
    for path in patched:
        print(f"patched {path}: Image.LINEAR -> Image.BILINEAR (Pillow 10 removed the alias)")
    return patched


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(workdir):
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-build-isolation",
        "--no-binary",
        ":all:",
        "-d",
        workdir,
        SDIST,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (name,) = [n for n in os.listdir(workdir) if n.endswith(".tar.gz")]
    return os.path.join(workdir, name)


def install(sdist, site):
    digest = sha256(sdist)
    if digest != SHA256:
        sys.exit(f"error: {sdist} has sha256 {digest}, expected {SHA256}; refusing to install")
    target = os.path.join(site, "detectron2")
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (root,) = os.listdir(tmp)
        src = os.path.join(tmp, root, "detectron2")
        if not os.path.isdir(src):
            sys.exit(f"error: {sdist} has no detectron2/ package")
        staged = target + ".partial"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(src, staged)
        # detectron2's setup.py links configs into detectron2/model_zoo/configs at build time.
        configs = os.path.join(tmp, root, "configs")
        if os.path.isdir(configs):
            shutil.copytree(configs, os.path.join(staged, "model_zoo", "configs"), dirs_exist_ok=True)
        with open(os.path.join(staged, "_C.py"), "w") as f:
            f.write(PLACEHOLDER)
        patch_pillow_alias(staged)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    print(f"installed detectron2 0.6 (Python only) into {target}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force",
        action="store_true",
        help="reinstall even if detectron2 is installed (without it, an installed "
        "detectron2 only gets the Pillow fix)",
    )
    parser.add_argument("--sdist", help="use this local pb1-detectron2-0.6.tar.gz instead of pip")
    args = parser.parse_args()
    package_dir = installed_package_dir()
    if package_dir is not None and not args.force:
        print(
            f"detectron2 is already installed in {package_dir}; leaving it in place "
            "(use --force to replace it)"
        )
        fix_installed(package_dir)
        return
    site = sysconfig.get_paths()["purelib"]
    with tempfile.TemporaryDirectory() as workdir:
        sdist = args.sdist or fetch_sdist(workdir)
        install(sdist, site)


if __name__ == "__main__":
    main()
