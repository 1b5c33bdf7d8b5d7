"""Shape primitives shared by the anatomy, the findings and the renderer: soft steps, compact bumps, the
normalized pixel grid and the tight box of a drawn change."""

import functools

import numpy as np

__all__ = ["BOX_LEVEL", "clip", "ramp", "pixel_grid", "box_from_support", "blob"]

#: a box covers the pixels where a finding changes the attenuation by at least this fraction of its peak
BOX_LEVEL = 0.1

# the clip ufunc of numpy 1.x has far less overhead than np.clip (numpy 2 made np.clip fast)
clip = np.clip if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else np.core.umath.clip


def ramp(x, width):
    """Soft step from 0 (x <= -width/2) to 1 (x >= width/2)."""
    y = x * np.float32(1.0 / width) + np.float32(0.5)
    return (
        clip(y, np.float32(0), np.float32(1), out=y) if isinstance(y, np.ndarray) else min(max(y, 0.0), 1.0)
    )


@functools.lru_cache(maxsize=8)
def pixel_grid(size):
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[None, :], c[:, None]  # x (1, S), y (S, 1)


def box_from_support(support, window, level=BOX_LEVEL):
    """Tight [x, y, w, h] box (pixels) of ``support >= level * max`` inside ``window``."""
    peak = float(support.max()) if support.size else 0.0
    if peak <= 0:
        return None
    mask = support >= level * peak
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0 = window[0].start + rows[0]
    x0 = window[1].start + cols[0]
    return [float(x0), float(y0), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def blob(u, v, cu, cv, ru, rv=None, power=1.0):
    """Compactly supported elliptic bump (1 - r^2)^power: no tails outside its ellipse."""
    rv = ru if rv is None else rv
    q = clip(1 - ((u - cu) / ru) ** 2 - ((v - cv) / rv) ** 2, 0, 1)
    return q if power == 1.0 else q**power
