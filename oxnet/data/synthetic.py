"""A synthetic frontal chest X-ray generator with boxes for the nine classes of the paper.

Images are drawn as an attenuation map (bright = dense) in anatomical coordinates normalized by the
image size, so every size works. Convention: the patient faces the viewer, so the patient's left
(aortic knob, cardiac apex) is on the image's right.

Every image is a pure function of ``(seed, index)``: the patient comes from
``default_rng([seed, index, 0])``, each finding class from ``default_rng([seed, index, 1, class])``, the
noise from ``default_rng([seed, index, 2])`` and the list of classes present from
``default_rng([seed, index, 3])``. ``sample(index, findings=[...])`` therefore renders the same patient
with any chosen subset of its findings, and images can be generated in parallel.

Each finding is drawn as a local change of the attenuation map; its box is the tight box of the pixels
where that change reaches :data:`BOX_LEVEL` of its peak (for cardiomegaly: the visible heart).
"""

import dataclasses
import functools
import os

import cv2
import numpy as np

from oxnet.config import PAPER_CLASSES
from oxnet.utils.workers import worker_map

__all__ = ["SyntheticCXR", "Finding", "generate_split", "synthetic_categories", "contact_sheet"]

#: probability of each class being present in a random image (several can co-occur)
CLASS_PREVALENCE = {
    "aortic calcification": 0.22,
    "cardiomegaly": 0.2,
    "fracture": 0.2,
    "mass": 0.15,
    "nodule": 0.22,
    "pleural effusion": 0.2,
    "pneumonia": 0.2,
    "pneumothorax": 0.15,
    "tuberculosis": 0.18,
}
#: fraction of images drawn without any finding
NORMAL_FRACTION = 0.3
#: a box covers the pixels where a finding changes the attenuation by at least this fraction of its peak
BOX_LEVEL = 0.1


@dataclasses.dataclass
class Finding:
    """One drawn lesion: class, its change to the attenuation map in a window, and its tight box."""

    name: str
    window: tuple  # (slice rows, slice cols)
    layer: np.ndarray = None  # added to the attenuation map in the window
    markings: np.ndarray = None  # multiplies the vascular markings in the window (1 = unchanged)
    box: list = None  # [x, y, w, h] in pixels
    ctr: float = None  # cardiomegaly: the enlarged cardiothoracic ratio


# the clip ufunc of numpy 1.x has far less overhead than np.clip (numpy 2 made np.clip fast)
_clip = np.clip if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else np.core.umath.clip


def _ramp(x, width):
    """Soft step from 0 (x <= -width/2) to 1 (x >= width/2)."""
    y = x * np.float32(1.0 / width) + np.float32(0.5)
    return (
        _clip(y, np.float32(0), np.float32(1), out=y) if isinstance(y, np.ndarray) else min(max(y, 0.0), 1.0)
    )


@functools.lru_cache(maxsize=8)
def _pixel_grid(size):
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[None, :], c[:, None]  # x (1, S), y (S, 1)


def _box_from_support(support, window, level=BOX_LEVEL):
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


class _Patient:
    """Anatomy of one patient in normalized, rotation-corrected coordinates (u right, v down)."""

    def __init__(self, rng, size):
        self.size = size
        r = rng.uniform
        self.cx = 0.5 + rng.normal(0, 0.012)
        self.angle = np.deg2rad(r(-4, 4))
        self.tw = r(0.33, 0.40)  # thorax half-width
        self.v_apex = r(0.10, 0.15)
        self.v_dia = r(0.62, 0.70)  # left (image right) dome top
        self.dia_asym = r(0.01, 0.035)  # the right hemidiaphragm (image left) is higher
        self.ctr = self.ctr_normal = r(0.40, 0.48)  # cardiothoracic ratio (cardiomegaly changes ctr)
        self.heart_shift = r(0.25, 0.4)
        self.med_w = r(0.055, 0.07)
        self.knob_r = r(0.024, 0.032)
        self.knob_v = self.v_apex + r(0.14, 0.18)
        self.lung_depth = r(0.30, 0.40)
        self.soft = r(0.42, 0.52)
        self.rib_start = self.v_apex + r(-0.01, 0.02)
        self.rib_spacing = r(0.046, 0.054)
        self.rib_growth = r(0.02, 0.06)
        self.rib_curve = r(0.14, 0.2)
        self.rib_amp = r(0.06, 0.1)
        self.gain = r(0.85, 1.15)
        self.offset = r(0.0, 0.1)
        self.gamma = r(0.8, 1.25)
        self.noise = r(0.006, 0.02)
        self.blur = r(0.6, 1.3) * size / 512
        self.markings_amp = r(0.09, 0.14)
        self.markings_seed = int(rng.integers(2**31))
        n = 12
        self.rib_knots = self.rib_start + np.cumsum(
            np.r_[0, self.rib_spacing * (1 + self.rib_growth * np.arange(n - 1) / 2)]
        )
        c, s = np.cos(self.angle), np.sin(self.angle)
        self._rot = (c, s)

    # ----- coordinates -----------------------------------------------------------------------------
    def coords(self, window=None):
        """Anatomical (u, v) arrays for a pixel window (default: the whole image)."""
        gx, gy = _pixel_grid(self.size)
        if window is not None:
            gy, gx = gy[window[0]], gx[:, window[1]]
        c, s = self._rot
        dx, dy = gx - 0.5, gy - 0.5
        return 0.5 + c * dx + s * dy, 0.5 - s * dx + c * dy

    def window(self, u, v, radius_u, radius_v=None):
        """Pixel window (row slice, col slice) covering anatomical box centre (u, v) +- radii."""
        radius_v = radius_u if radius_v is None else radius_v
        c, s = self._rot
        x = 0.5 + c * (u - 0.5) - s * (v - 0.5)
        y = 0.5 + s * (u - 0.5) + c * (v - 0.5)
        hx = (abs(c) * radius_u + abs(s) * radius_v) * self.size + 3
        hy = (abs(s) * radius_u + abs(c) * radius_v) * self.size + 3
        S = self.size
        x0, x1 = int(max(0, np.floor(x * S - hx))), int(min(S, np.ceil(x * S + hx)))
        y0, y1 = int(max(0, np.floor(y * S - hy))), int(min(S, np.ceil(y * S + hy)))
        return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1))

    # ----- anatomy ---------------------------------------------------------------------------------
    def dome(self, u, side):
        """Diaphragm height v under the hemithorax ``side`` (+1: image right, patient's left)."""
        d = side * (u - self.cx) / self.tw
        top = self.v_dia - (self.dia_asym if side < 0 else 0.0)
        return top + 0.09 * (d - 0.45) ** 2

    def diaphragm(self, u):
        """Diaphragm height v across the image (both domes)."""
        top = np.where(u > self.cx, np.float32(self.v_dia), np.float32(self.v_dia - self.dia_asym))
        d = np.abs(u - self.cx) * np.float32(1 / self.tw) - np.float32(0.45)
        return top + 0.09 * d * d

    def heart_params(self, ctr=None):
        ctr = self.ctr if ctr is None else ctr
        a = ctr * self.tw  # half-width: the heart is 2a wide, the thorax 2 tw
        b = a * 0.85
        hc = self.cx + self.heart_shift * a  # the apex points to the patient's left (image right)
        hv = self.v_dia - 0.3 * b
        return hc, hv, a, b

    def heart(self, u, v, ctr=None):
        hc, hv, a, b = self.heart_params(ctr)
        x = (u - hc) / a
        y = (v - hv + 0.25 * (u - hc)) / b  # long axis tilted down towards the apex
        q = 1 - x * x - y * y
        return _ramp(q, 0.12)

    def knob_centre(self):
        """The aortic knob bulges from the upper mediastinum on the patient's left (image right)."""
        return self.cx + self.med_w + 0.2 * self.knob_r, self.knob_v

    def knob(self, u, v):
        ku, kv = self.knob_centre()
        return _ramp(1 - ((u - ku) / self.knob_r) ** 2 - ((v - kv) / (1.3 * self.knob_r)) ** 2, 0.3)

    def lung_level(self, u, v, side):
        """Superellipse level of the lung outline: 1 at the centre, 0 on the lateral/apical border."""
        dc = self.tw * 0.5
        a = self.tw * 0.52
        vc = self.v_dia - 0.08
        b_top = vc - self.v_apex
        b = np.where(v < vc, b_top, b_top * 1.5)
        d = side * (u - self.cx)
        x, y = np.abs((d - dc) / a), np.abs((v - vc) / b)
        return 1 - x * x * np.sqrt(x) - y * y * np.sqrt(y)  # superellipse of exponent 2.5

    def lung(self, u, v, side, ctr=None):
        """Soft mask of one lung field: outline, mediastinum, aortic knob, heart and diaphragm."""
        px = 1.5 / self.size
        d = side * (u - self.cx)
        m = _ramp(self.lung_level(u, v, side), 0.05)
        m *= _ramp(d - self.med_w, 2 * px)
        m *= _ramp(self.dome(u, side) - v, 2 * px)
        if side > 0:
            m *= 1 - self.knob(u, v)
        m *= 1 - self.heart(u, v, ctr)
        return m

    def rib_phase(self, t):
        """Continuous rib number at rib-aligned coordinate ``t``: rib k starts at ``rib_knots[k]``.

        The knots are start + spacing * (k + growth * k (k - 1) / 4), so the phase is a quadratic's root.
        """
        a = self.rib_growth / 4
        b = 1 - a
        x = (t - self.rib_start) * np.float32(1 / self.rib_spacing)
        root = np.sqrt(np.maximum(b * b + 4 * a * x, 0))
        return (root - b) * np.float32(1 / (2 * a))

    @staticmethod
    def _bone(z):
        """Rib cross-section for z in [0, 1) within a rib interval: bone over the upper half, brighter
        cortical edges."""
        z = 2 * _clip(z * 2, 0, 1) - 1  # -1..1 over the upper half, 1 over the lower half
        return np.sqrt(_clip(1 - z * z, 0, 1)) * (0.75 + 0.25 * z * z)

    def rib_profile(self, t, k):
        """Bone density of posterior rib ``k`` alone at rib-aligned coordinate ``t``."""
        z = self.rib_phase(t) - k
        return self._bone(z) * ((z >= 0) & (z < 1))

    def rib_t(self, u, v):
        d = np.abs(u - self.cx) / self.tw
        return v - (-0.02 * d + self.rib_curve * d * d)

    def ribs(self, u, v):
        """Posterior ribs 0..N-1 (all of them) in the thorax."""
        phase = self.rib_phase(self.rib_t(u, v))
        bone = self._bone(phase - np.floor(phase))
        bone *= (phase >= 0) & (phase < len(self.rib_knots) - 1)
        lateral = _ramp(self.tw * 1.02 - np.abs(u - self.cx), 0.02)
        return bone * lateral


# ----- findings ------------------------------------------------------------------------------------
def _point_in_lung(p, rng, side, margin, zone=(0.0, 1.0)):
    """A point well inside one lung, in a vertical zone given as fractions of apex..diaphragm."""
    lo = p.v_apex + zone[0] * (p.v_dia - p.v_apex)
    hi = p.v_apex + zone[1] * (p.v_dia - p.v_apex)
    best = None
    for _ in range(64):
        u = p.cx + side * rng.uniform(p.med_w, p.tw)
        v = rng.uniform(lo, hi)
        us = np.array([u, u - margin, u + margin, u, u], np.float32)
        vs = np.array([v, v, v, v - margin, v + margin], np.float32)
        score = float(p.lung(us, vs, side, p.ctr_normal).min())  # placement ignores cardiomegaly
        if best is None or score > best[0]:
            best = (score, u, v)
        if score > 0.99:
            break
    return best[1], best[2]


def _blob(u, v, cu, cv, ru, rv=None, power=1.0):
    """Compactly supported elliptic bump (1 - r^2)^power: no tails outside its ellipse."""
    rv = ru if rv is None else rv
    q = _clip(1 - ((u - cu) / ru) ** 2 - ((v - cv) / rv) ** 2, 0, 1)
    return q if power == 1.0 else q**power


def _nodule(p, rng):
    side = rng.choice([-1, 1])
    r = rng.uniform(4, 15) / 512
    cu, cv = _point_in_lung(p, rng, side, 1.5 * r, (0.1, 0.85))
    win = p.window(cu, cv, r)
    u, v = p.coords(win)
    return Finding("nodule", win, rng.uniform(0.22, 0.32) * np.sqrt(_blob(u, v, cu, cv, r)))


def _mass(p, rng):
    side = rng.choice([-1, 1])
    R = rng.uniform(0.045, 0.085)
    cu, cv = _point_in_lung(p, rng, side, R, (0.2, 0.8))
    win = p.window(cu, cv, 1.6 * R)
    u, v = p.coords(win)
    layer = _blob(u, v, cu, cv, R, R * rng.uniform(0.8, 1.1), 0.6)
    for _ in range(rng.integers(2, 5)):
        ang, rr = rng.uniform(0, 2 * np.pi), R * rng.uniform(0.5, 0.75)
        layer = np.maximum(
            layer, _blob(u, v, cu + 0.7 * R * np.cos(ang), cv + 0.7 * R * np.sin(ang), rr, rr, 0.6)
        )
    layer *= rng.uniform(0.26, 0.34) * p.lung(u, v, side)
    return Finding("mass", win, layer)


def _patchy(rng, u, v, centers, radii, amp):
    """Patchy, ill-defined opacity: overlapping soft blobs modulated by a coarse random texture."""
    layer = np.zeros(u.shape if u.shape == v.shape else np.broadcast(u, v).shape, np.float32)
    for (bu, bv), br in zip(centers, radii):
        layer += _blob(u, v, bu, bv, br, br * rng.uniform(0.7, 1.2), 2.0)
    h, w = layer.shape
    tex = rng.uniform(0.4, 1.0, size=(max(2, h // 10), max(2, w // 10))).astype(np.float32)
    layer *= cv2.resize(tex, (w, h), interpolation=cv2.INTER_CUBIC)
    return amp * _clip(layer, 0, 1)


def _pneumonia(p, rng):
    side = rng.choice([-1, 1])
    R = rng.uniform(0.05, 0.09)
    cu, cv = _point_in_lung(p, rng, side, 0.5 * R, (0.35, 0.85))
    win = p.window(cu, cv, 1.8 * R)
    u, v = p.coords(win)
    n = rng.integers(5, 10)
    centers = [(cu + R * rng.uniform(-0.8, 0.8), cv + R * rng.uniform(-0.8, 0.8)) for _ in range(n)]
    radii = R * rng.uniform(0.35, 0.7, size=n)
    layer = _patchy(rng, u, v, centers, radii, rng.uniform(0.2, 0.28)) * p.lung(u, v, side)
    return Finding("pneumonia", win, layer)


def _tuberculosis(p, rng, side):
    R = rng.uniform(0.04, 0.07)
    cu, cv = _point_in_lung(p, rng, side, 0.5 * R, (0.08, 0.3))
    win = p.window(cu, cv, 1.8 * R)
    u, v = p.coords(win)
    n = rng.integers(3, 7)
    centers = [(cu + R * rng.uniform(-0.8, 0.8), cv + R * rng.uniform(-0.7, 0.7)) for _ in range(n)]
    radii = R * rng.uniform(0.2, 0.45, size=n)
    layer = _patchy(rng, u, v, centers, radii, rng.uniform(0.22, 0.3))
    if rng.random() < 0.6:  # a cavity: thick bright wall around a lucent centre
        rc = R * rng.uniform(0.25, 0.4)
        rho = np.sqrt((u - cu) ** 2 + (v - cv) ** 2) / rc
        wall = _clip(1 - ((rho - 1) / 0.45) ** 2, 0, 1)
        layer = np.maximum(layer, 0.3 * wall) - 0.08 * _clip(1 - rho * rho, 0, 1)
    layer *= p.lung(u, v, side)
    return Finding("tuberculosis", win, layer)


def _effusion(p, rng):
    side = rng.choice([-1, 1])
    h = rng.uniform(0.04, 0.15)
    top = p.v_dia + (-p.dia_asym if side < 0 else 0.0) - h
    lateral = p.cx + side * p.tw * 1.05
    u0, u1 = sorted([p.cx + side * p.med_w, lateral])
    win = p.window(
        (u0 + u1) / 2,
        (top + p.v_dia + 0.12) / 2 - 0.05,
        (u1 - u0) / 2 + 0.01,
        (p.v_dia + 0.12 - top) / 2 + 0.08,
    )
    u, v = p.coords(win)
    d = _clip(side * (u - p.cx) / p.tw, 0, 1.2)
    meniscus = top - rng.uniform(0.06, 0.12) * d**2.5  # rises along the lateral chest wall
    fluid = _ramp(v - meniscus, 0.025) * (0.8 + 0.2 * _ramp(v - meniscus - 0.05, 0.1))
    lung = p.lung(u, v, side)
    return Finding("pleural effusion", win, 0.9 * p.lung_depth * fluid * lung, 1 - 0.95 * fluid * lung)


def _pneumothorax(p, rng):
    side = rng.choice([-1, 1])
    level = rng.uniform(0.35, 0.6)
    vc = p.v_dia - 0.08
    low = vc + rng.uniform(-0.05, 0.1)  # how far down the lateral wall the air reaches
    u_mid = p.cx + side * p.tw * 0.55
    win = p.window(u_mid, (p.v_apex + low) / 2, p.tw * 0.62, (low - p.v_apex) / 2 + 0.05)
    u, v = p.coords(win)
    L = p.lung_level(u, v, side)
    lung = p.lung(u, v, side)
    reach = _ramp(low - v, 0.04)
    reach *= _ramp(side * (u - p.cx) - p.tw * 0.45, 0.1)  # apical and lateral, not medial
    band = _ramp(level - L, 0.02) * lung * reach
    w = 1.5 / p.size / 0.05  # pleural line about 1.5 px thick (level changes ~0.05 per 0.01 of width)
    line = np.exp(-(((L - level) / (0.012 + w)) ** 2)) * lung * reach
    layer = -0.08 * band + 0.12 * line
    return Finding("pneumothorax", win, layer, 1 - band)


def _aortic_calcification(p, rng):
    ku, kv = p.knob_centre()
    r = p.knob_r * rng.uniform(0.85, 1.0)
    win = p.window(ku, kv, 1.3 * p.knob_r)
    u, v = p.coords(win)
    rho = np.sqrt((u - ku) ** 2 + (v - kv) ** 2)
    theta = np.arctan2(v - kv, u - ku)  # 0 = lateral (image right), -pi/2 = up
    t0 = rng.uniform(-2.6, -1.9)
    t1 = t0 + rng.uniform(1.4, 2.2)
    arc = _ramp(theta - t0, 0.15) * _ramp(t1 - theta, 0.15)
    thick = max(1.2 / p.size, 0.0035)
    layer = rng.uniform(0.3, 0.42) * np.exp(-(((rho - r) / thick) ** 2)) * arc
    return Finding("aortic calcification", win, layer)


def _fracture(p, rng):
    side = rng.choice([-1, 1])
    k = int(rng.integers(2, 8))
    d = rng.uniform(0.45, 0.85)
    fu = p.cx + side * d * p.tw
    kn = p.rib_knots
    t_centre = kn[k] + 0.25 * (kn[k + 1] - kn[k])
    fv = t_centre + (-0.02 * d + p.rib_curve * d * d)  # inverse of _Patient.rib_t
    spacing = kn[k + 1] - kn[k]
    win = p.window(fu, fv, 1.6 * spacing, 1.4 * spacing)
    u, v = p.coords(win)
    t = p.rib_t(u, v)
    s = side * (u - fu)  # signed distance from the fracture, lateral positive
    frag = 1.2 * spacing
    step = rng.choice([-1, 1]) * spacing * rng.uniform(0.3, 0.4)
    shift = step * _ramp(s, 0.004) * _clip(1 - s / frag, 0, 1)
    line = np.exp(-((s / max(2.0 / p.size, 0.005)) ** 2))
    gap = 1 - line
    new = p.rib_profile(t - shift, k) * gap
    callus = 0.5 * _blob(u, v, fu, fv, 0.6 * spacing, 0.45 * spacing, 2.0)
    old = p.rib_profile(t, k)
    layer = (new - old - 0.4 * line * np.maximum(old, p.rib_profile(t - shift, k))) * p.rib_amp * 2.2
    layer += callus * 0.2
    layer *= 0.35 + 0.65 * p.lung(u, v, side)
    return Finding("fracture", win, layer)


def _cardiomegaly(p, rng):
    ctr = rng.uniform(0.56, 0.66)
    hc, hv, a, b = p.heart_params(ctr)
    win = p.window(hc, hv, a + 0.01, b + 0.01)
    u, v = p.coords(win)
    visible = (p.heart(u, v, ctr) >= 0.5) & (v < p.diaphragm(u))
    return Finding("cardiomegaly", win, box=_box_from_support(visible.astype(np.float32), win, 0.5), ctr=ctr)


def _draw(p, name, rng):
    if name == "tuberculosis":
        sides = [-1, 1] if rng.random() < 0.35 else [rng.choice([-1, 1])]
        return [_tuberculosis(p, rng, s) for s in sides]
    if name == "nodule":
        return [_nodule(p, rng) for _ in range(1 if rng.random() < 0.75 else 2)]
    if name == "fracture":
        return [_fracture(p, rng)]
    return [
        {
            "aortic calcification": _aortic_calcification,
            "cardiomegaly": _cardiomegaly,
            "mass": _mass,
            "pleural effusion": _effusion,
            "pneumonia": _pneumonia,
            "pneumothorax": _pneumothorax,
        }[name](p, rng)
    ]


class SyntheticCXR:
    """Deterministic synthetic chest X-rays with tight boxes for :data:`PAPER_CLASSES`.

    Example::

        gen = SyntheticCXR(size=512, seed=0)
        image, boxes = gen.sample(7)               # uint8 HxW, [(class name, [x, y, w, h]), ...]
        normal, _ = gen.sample(7, findings=[])     # the same patient without findings
    """

    classes = PAPER_CLASSES

    def __init__(self, size=512, seed=0):
        if size < 64:
            raise ValueError(f"SyntheticCXR: size must be >= 64, got {size}")
        self.size = int(size)
        self.seed = int(seed)

    def findings_of(self, index):
        """The classes present in image ``index`` (its random draw)."""
        rng = np.random.default_rng([self.seed, index, 3])
        if rng.random() < NORMAL_FRACTION:
            return []
        present = [c for c in self.classes if rng.random() < CLASS_PREVALENCE[c]]
        if not present:
            present = [self.classes[int(rng.integers(len(self.classes)))]]
        return present

    def _scene(self, index, findings):
        p = _Patient(np.random.default_rng([self.seed, index, 0]), self.size)
        if findings is None:
            findings = self.findings_of(index)
        unknown = set(findings) - set(self.classes)
        if unknown:
            raise ValueError(f"SyntheticCXR: unknown classes {sorted(unknown)}; known: {self.classes}")
        drawn = []
        for c in self.classes:  # fixed order: the draw of one class never depends on another
            if c in findings:
                rng = np.random.default_rng([self.seed, index, 1, self.classes.index(c)])
                drawn.extend(_draw(p, c, rng))
                if c == "cardiomegaly":  # later findings see the enlarged heart (classes are in order)
                    p.ctr = drawn[-1].ctr
        for f in drawn:
            if f.box is None:
                support = np.abs(f.layer) if f.layer is not None else 0
                if f.markings is not None:
                    support = np.maximum(support / max(float(np.max(support)), 1e-6), 1 - f.markings)
                f.box = _box_from_support(support, f.window)
        return p, drawn

    def annotate(self, index, findings=None):
        """The boxes of image ``index`` without rendering it: list of (class name, [x, y, w, h])."""
        _, drawn = self._scene(index, findings)
        return [(f.name, f.box) for f in drawn if f.box is not None]

    def render(self, index, findings=None):
        """Float32 HxW image in [0, 1] and the list of (class name, [x, y, w, h]) boxes."""
        p, drawn = self._scene(index, findings)
        S = self.size
        u, v = p.coords()
        ad = np.abs(u - p.cx)
        # body: neck, shoulders and chest wall; soft tissue thickest in the middle
        bw = p.tw * 1.22 - (p.tw * 1.22 - 0.09) * _ramp(p.v_apex + 0.02 - v, 0.14)
        rel = ad / bw
        A = _ramp(bw - ad, 0.02) * (p.soft + 0.15 * _clip(1 - rel * rel, 0, 1))
        dia = p.diaphragm(u)
        A += 0.06 * _ramp(v - dia, 0.02) * (A > 0.1)  # abdomen
        win = p.window(p.cx, 0.55, 0.05, 0.6)  # spine
        uw, vw = u[win], v[win]
        A[win] += (
            0.05
            * _ramp(0.04 - np.abs(uw - p.cx), 0.01)
            * (0.85 + 0.15 * np.cos(vw * (2 * np.pi / 0.045)))
            * _ramp(vw - p.v_apex + 0.1, 0.05)
        )
        # lungs (with vascular markings radiating from the hila), each in its own window
        lungs = np.zeros((S, S), np.float32)
        air = np.zeros((S, S), np.float32)
        tex = self._markings_texture(p)
        for side in (-1, 1):
            d0, d1 = p.med_w, p.tw * 1.04
            v0, v1 = p.v_apex - 0.01, p.v_dia + 0.13
            win = p.window(p.cx + side * (d0 + d1) / 2, (v0 + v1) / 2, (d1 - d0) / 2, (v1 - v0) / 2)
            uw, vw = u[win], v[win]
            lung = p.lung(uw, vw, side)
            lungs[win] = np.maximum(lungs[win], lung)
            depth = p.lung_depth * (0.82 + 0.18 * _ramp(vw - p.v_apex - 0.15, 0.3))
            hu, hv = p.cx + side * p.tw * 0.3, p.v_apex + 0.28
            hilum = 0.07 * _clip(1 - ((uw - hu) / 0.07) ** 2 - ((vw - hv) / 0.1) ** 2, 0, 1)
            air[win] += lung * (depth - hilum - self._markings(p, tex, uw - hu, vw - hv))
        for f in drawn:
            if f.markings is not None:  # markings are hidden by fluid or absent outside a collapsed lung
                m = f.markings
                air[f.window] = air[f.window] * m + (1 - m) * lungs[f.window] * p.lung_depth
        # thorax: mediastinum and ribs
        win = p.window(p.cx, (p.v_apex + p.v_dia + 0.14) / 2, p.tw * 1.06, (p.v_dia + 0.2 - p.v_apex) / 2)
        uw, vw, lw = u[win], v[win], lungs[win]
        inside = _ramp(dia[win] - vw, 0.02) * _ramp(p.tw - np.abs(uw - p.cx), 0.02)
        A[win] += 0.05 * (1 - lw) * inside
        A[win] += p.rib_amp * p.ribs(uw, vw) * (0.25 + 0.75 * lw) * _ramp(vw - p.v_apex + 0.04, 0.03)
        self._clavicles(p, A)
        A -= air
        for f in drawn:
            if f.layer is not None:
                A[f.window] += f.layer
        if p.blur > 0.3:
            A = cv2.GaussianBlur(A, (0, 0), p.blur)
        nrng = np.random.default_rng([self.seed, index, 2])
        noise = nrng.random((S, S), dtype=np.float32)  # uniform, scaled to the drawn standard deviation
        noise -= np.float32(0.5)
        noise *= np.float32(p.noise * np.sqrt(12))
        A += noise
        img = A * np.float32(p.gain) + np.float32(p.offset)
        _clip(img, 0, 1, out=img)
        lut = np.linspace(0, 1, 4096, dtype=np.float32) ** np.float32(p.gamma)
        img = lut[(img * 4095 + 0.5).astype(np.int16)]
        return img, [(f.name, f.box) for f in drawn if f.box is not None]

    @staticmethod
    def _clavicles(p, A):
        for side in (-1, 1):
            x0, y0 = p.cx + side * 0.035, p.v_apex + 0.07
            x1, y1 = p.cx + side * p.tw * 1.05, p.v_apex - 0.015
            win = p.window((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2 + 0.02, abs(y1 - y0) / 2 + 0.03)
            uw, vw = p.coords(win)
            dx, dy = x1 - x0, y1 - y0
            L = np.hypot(dx, dy)
            along = ((uw - x0) * dx + (vw - y0) * dy) / L
            across = (-(uw - x0) * dy + (vw - y0) * dx) / L - 0.012 * np.sin(np.pi * along / L)
            bone = (
                np.sqrt(_clip(1 - (across / 0.012) ** 2, 0, 1)) * _ramp(along, 0.01) * _ramp(L - along, 0.02)
            )
            A[win] += 0.13 * bone

    @staticmethod
    def _markings_texture(p):
        rng = np.random.default_rng(p.markings_seed)
        tex = rng.standard_normal((96, 720)).astype(np.float32)
        tex = cv2.GaussianBlur(tex, (0, 0), sigmaX=2.0, sigmaY=1.5, borderType=cv2.BORDER_REFLECT)
        return tex / (tex.std() + 1e-6)

    @staticmethod
    def _markings(p, tex, dx, dy):
        """Vessel-like lines (zero crossings of a polar noise texture) fading away from the hilum."""
        r, th = cv2.cartToPolar(np.ascontiguousarray(dx, np.float32), np.ascontiguousarray(dy, np.float32))
        mx = th * np.float32(tex.shape[1] / (2 * np.pi))
        my = np.sqrt(r) * np.float32(tex.shape[0] / 0.65)
        t = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return p.markings_amp * np.exp(-(t * t) * 4.0 - r * 4.0)

    def sample(self, index, findings=None):
        """uint8 HxW image and its list of (class name, [x, y, w, h]) boxes.

        ``findings``: None draws the image's own findings; a list of class names draws exactly those (the
        same patient and lesion geometry as in every other rendering of ``index``).
        """
        img, boxes = self.render(index, findings)
        return np.rint(img * 255).astype(np.uint8), boxes


# ----- datasets ------------------------------------------------------------------------------------
def synthetic_categories():
    """OXnet-COCO categories: ids 1..9 in :data:`PAPER_CLASSES` order."""
    return [
        {"id": i + 1, "name": c, "supercategory": "thoracic disease"} for i, c in enumerate(PAPER_CLASSES)
    ]


def _image_path(out_dir, split_name, index, dicom):
    rel = f"{split_name}/syn_{index:06d}.{'dcm' if dicom else 'png'}"
    return rel, os.path.join(out_dir, "images", rel)


def _make_one(args):
    gen_args, out_dir, split_name, index, dicom = args
    from oxnet.data.io import write_dicom, write_png

    gen = SyntheticCXR(*gen_args)
    rel, path = _image_path(out_dir, split_name, index, dicom)
    if os.path.exists(path):
        return index, rel, gen.annotate(index)
    img, boxes = gen.render(index)
    if dicom:
        stored = np.rint(img * 4095).astype(np.uint16)
        write_dicom(
            path,
            stored,
            bits_stored=12,
            attributes={
                "WindowCenter": 2048,
                "WindowWidth": 4096,
                "PatientID": f"SYN{index:06d}",
                "ViewPosition": "PA",
                "BodyPartExamined": "CHEST",
            },
        )
    else:
        write_png(path, np.rint(img * 255).astype(np.uint8))
    return index, rel, boxes


def _check_params(folder, params):
    """Refuse to resume into a folder whose images were drawn with other parameters."""
    import json

    from oxnet.utils.atomic import atomic_write_json

    stamp = os.path.join(folder, "synthetic_params.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            old = json.load(f)
        if old != params:
            raise ValueError(
                f"{folder} holds synthetic images drawn with {old}, not {params}; "
                f"use another output folder or delete it"
            )
    else:
        atomic_write_json(stamp, params)


def generate_split(
    out_dir,
    split_name,
    n_full,
    n_weak=0,
    n_unlabeled=0,
    size=512,
    seed=0,
    dicom=False,
    start_index=0,
    workers=1,
    progress=True,
):
    """Write the images of one split under ``out_dir/images/<split_name>/`` and return its OXnet-COCO dict.

    Images ``start_index .. start_index + n_full + n_weak + n_unlabeled - 1`` are fully labeled (boxes),
    then weakly labeled (``image_labels`` for all nine classes), then unlabeled. ``file_name`` is relative
    to ``out_dir/images``; image ids are ``index + 1``, so splits with disjoint index ranges never share an
    image. Images already on disk are not rendered again (their boxes are recomputed cheaply).
    """
    from tqdm import tqdm

    n = n_full + n_weak + n_unlabeled
    _check_params(os.path.join(out_dir, "images", split_name), {"size": size, "seed": seed})
    jobs = [((size, seed), out_dir, split_name, start_index + i, dicom) for i in range(n)]
    pool_size = workers if workers > 1 else 0  # one worker: render inline
    with worker_map(_make_one, jobs, pool_size, chunksize=4, start_method="spawn") as results:
        results = list(tqdm(results, total=n, disable=not progress, desc=f"synthetic {split_name}"))
    cat_id = {c: i + 1 for i, c in enumerate(PAPER_CLASSES)}
    images, annotations = [], []
    for index, rel, boxes in sorted(results):
        k = index - start_index
        supervision = "full" if k < n_full else "weak" if k < n_full + n_weak else "unlabeled"
        image = {
            "id": index + 1,
            "file_name": rel,
            "height": size,
            "width": size,
            "supervision": supervision,
            "patient_id": f"SYN{index:06d}",
            "view": "PA",
            "source": "synthetic",
        }
        if supervision == "weak":
            present = {name for name, _ in boxes}
            image["image_labels"] = {c: int(c in present) for c in PAPER_CLASSES}
        if supervision == "full":
            for name, (x, y, w, h) in boxes:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": index + 1,
                        "category_id": cat_id[name],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
        images.append(image)
    return {
        "info": {
            "description": f"OXnet synthetic chest X-rays, split {split_name}",
            "version": "1",
            "size": size,
            "seed": seed,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": synthetic_categories(),
    }


def contact_sheet(*args, **kwargs):
    """See :func:`oxnet.data.visualize.contact_sheet`."""
    from oxnet.data.visualize import contact_sheet as _contact_sheet

    return _contact_sheet(*args, **kwargs)
