"""A prepared image cache: every image decoded once, resized to SxS, stored as uint8 in one memory map.

The paper resizes chest X-rays to 512x512 without cropping (Sec. 3.1): the cache stores exactly that
(grey, min-max scaled per image as :func:`oxnet.data.io.read_image` does, then resized to SxS with
area interpolation, aspect ratio not kept). Boxes stay in the original image's pixels in the dataset
dicts; a mapper reading from the cache scales them by ``S / width`` and ``S / height``
(:meth:`ImageCache.scale`).

Files, for a cache at ``PATH``: ``PATH.npy`` (uint8 [n, S, S], ``np.load(mmap_mode="r")``-able),
``PATH.index.json`` (size, file names, original (height, width)), ``PATH.done.npy`` (bool [n], the
images written so far; an interrupted build resumes from it).
"""

import json
import os
import time

import numpy as np

from oxnet.utils.atomic import atomic_open, atomic_write_json
from oxnet.utils.workers import worker_map

__all__ = ["build_cache", "ImageCache", "decode_resized"]

_VERSION = 1


def _paths(path):
    path = os.fspath(path)
    for suffix in (".index.json", ".done.npy", ".npy"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return path + ".npy", path + ".index.json", path + ".done.npy"


def decode_resized(file_name, size):
    """Decode an image file (PNG/JPEG/DICOM) to grey uint8, min-max scaled, resized to ``size`` x ``size``.

    Returns:
        (np.ndarray, (int, int)): the [size, size] uint8 array and the original (height, width).
    """
    import cv2

    from .io import read_raw, scale_to_uint8

    grey = scale_to_uint8(read_raw(file_name))
    h, w = grey.shape
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    return cv2.resize(grey, (size, size), interpolation=interp), (h, w)


def _work(args):
    i, file_name, size = args
    array, hw = decode_resized(file_name, size)
    return i, array, hw


def _file_names(dataset, image_root):
    if isinstance(dataset, (str, os.PathLike)):
        from .format import read_omni_coco

        coco = read_omni_coco(dataset)
        root = os.fspath(image_root) if image_root is not None else os.path.dirname(os.fspath(dataset))
        return [os.path.abspath(os.path.join(root, img["file_name"])) for img in coco["images"]]
    return [os.path.abspath(d["file_name"]) for d in dataset]


def _save_done(done_path, done):
    with atomic_open(done_path, "wb") as f:
        np.save(f, done)


def build_cache(dataset, out_path, size=512, workers=0, image_root=None, save_every=256, progress=True):
    """Decode every image of ``dataset`` once into a memory-mappable cache (see the module docstring).

    Args:
        dataset: a list of dataset dicts (absolute ``file_name``) or an OXnet-COCO JSON path.
        out_path (str): cache path without suffix (``.npy``/``.index.json``/``.done.npy`` are added).
        size (int): side S of the stored images.
        workers (int): decoding processes (0: in this process).
        image_root (str or None): folder of a JSON's file names (default: the JSON's folder).
        save_every (int): images between two saves of the done mask.

    A build that stops (error, interrupt) keeps what it wrote; calling again with the same files and
    size resumes. Files that cannot be read raise :class:`oxnet.data.io.ImageReadError` naming them.

    Returns:
        ImageCache: the finished cache.
    """
    from tqdm import tqdm

    files = _file_names(dataset, image_root)
    if len(set(files)) != len(files):
        raise ValueError(f"{out_path}: the dataset lists some image files twice")
    npy, index_path, done_path = _paths(out_path)
    os.makedirs(os.path.dirname(os.path.abspath(npy)), exist_ok=True)
    index = None
    if os.path.isfile(index_path) and os.path.isfile(npy) and os.path.isfile(done_path):
        with open(index_path, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("file_names") == files and old.get("size") == size and old.get("version") == _VERSION:
            index = old
    if index is None:
        index = {
            "version": _VERSION,
            "size": size,
            "file_names": files,
            "original_sizes": [None] * len(files),
            "complete": False,
        }
        array = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(len(files), size, size))
        done = np.zeros(len(files), bool)
        _save_done(done_path, done)
        atomic_write_json(index_path, index)
    else:
        array = np.load(npy, mmap_mode="r+")
        done = np.load(done_path)

    todo = [(i, files[i], size) for i in np.flatnonzero(~done)]
    bar = tqdm(
        total=len(files),
        initial=int(done.sum()),
        desc=f"caching {os.path.basename(npy)}",
        unit="img",
        disable=not progress,
    )
    last = time.monotonic()

    def save(array):
        array.flush()
        _save_done(done_path, done)
        atomic_write_json(index_path, index)

    try:
        with worker_map(_work, todo, workers, ordered=False, chunksize=4) as results:
            for k, (i, img, hw) in enumerate(results, 1):
                array[i] = img
                index["original_sizes"][i] = list(hw)
                done[i] = True
                bar.update(1)
                if k % save_every == 0 or time.monotonic() - last > 30:
                    save(array)
                    last = time.monotonic()
    finally:
        save(array)
        bar.close()
    index["complete"] = True
    atomic_write_json(index_path, index)
    del array
    return ImageCache(out_path)


class ImageCache:
    """Read access to a cache written by :func:`build_cache`; picklable (each process maps the file)."""

    def __init__(self, path):
        self.npy, self.index_path, self.done_path = _paths(path)
        with open(self.index_path, encoding="utf-8") as f:
            index = json.load(f)
        if not index.get("complete"):
            raise ValueError(
                f"{self.index_path}: the cache is incomplete; run build_cache again to finish it"
            )
        self.size = int(index["size"])
        self.file_names = index["file_names"]
        self._row = {f: i for i, f in enumerate(self.file_names)}
        self._original = index["original_sizes"]
        self._array = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_array"] = None
        return state

    def __len__(self):
        return len(self.file_names)

    def _key(self, file_name):
        file_name = os.fspath(file_name)
        return file_name if file_name in self._row else os.path.abspath(file_name)

    def __contains__(self, file_name):
        return self._key(file_name) in self._row

    def _index(self, file_name):
        try:
            return self._row[self._key(file_name)]
        except KeyError:
            raise KeyError(f"{file_name} is not in the cache {self.npy}") from None

    def read(self, file_name):
        """The cached image as uint8 S x S x 3 (grey replicated)."""
        if self._array is None:
            self._array = np.load(self.npy, mmap_mode="r")
        import cv2

        return cv2.cvtColor(np.asarray(self._array[self._index(file_name)]), cv2.COLOR_GRAY2BGR)

    def original_size(self, file_name):
        """(height, width) of the original image file."""
        h, w = self._original[self._index(file_name)]
        return int(h), int(w)

    def scale(self, file_name):
        """(sx, sy): multiply box x by sx and y by sy to go from original pixels to the cached image."""
        h, w = self.original_size(file_name)
        return self.size / w, self.size / h
