"""The nine findings of the paper, each drawn as a local change of a patient's attenuation map.

A finding function takes the :class:`~oxnet.data.synthetic.anatomy.Patient` and the finding's own
random generator and returns a :class:`Finding`: an additive ``layer`` and/or a ``markings`` factor in a
pixel window. Its box is the tight box of the pixels where that change reaches
:data:`~oxnet.data.synthetic.primitives.BOX_LEVEL` of its peak (:func:`tight_box`); cardiomegaly boxes
the visible heart instead.
"""

import dataclasses

import cv2
import numpy as np

from .primitives import blob, box_from_support, clip, ramp

__all__ = ["Finding", "draw_finding", "tight_box"]


@dataclasses.dataclass
class Finding:
    """One drawn lesion: class, its change to the attenuation map in a window, and its tight box."""

    name: str
    window: tuple  # (slice rows, slice cols)
    layer: np.ndarray = None  # added to the attenuation map in the window
    markings: np.ndarray = None  # multiplies the vascular markings in the window (1 = unchanged)
    box: list = None  # [x, y, w, h] in pixels
    ctr: float = None  # cardiomegaly: the enlarged cardiothoracic ratio


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


def _nodule(p, rng):
    side = rng.choice([-1, 1])
    r = rng.uniform(4, 15) / 512
    cu, cv = _point_in_lung(p, rng, side, 1.5 * r, (0.1, 0.85))
    win = p.window(cu, cv, r)
    u, v = p.coords(win)
    return Finding("nodule", win, rng.uniform(0.22, 0.32) * np.sqrt(blob(u, v, cu, cv, r)))


def _mass(p, rng):
    side = rng.choice([-1, 1])
    R = rng.uniform(0.045, 0.085)
    cu, cv = _point_in_lung(p, rng, side, R, (0.2, 0.8))
    win = p.window(cu, cv, 1.6 * R)
    u, v = p.coords(win)
    layer = blob(u, v, cu, cv, R, R * rng.uniform(0.8, 1.1), 0.6)
    for _ in range(rng.integers(2, 5)):
        ang, rr = rng.uniform(0, 2 * np.pi), R * rng.uniform(0.5, 0.75)
        layer = np.maximum(
            layer, blob(u, v, cu + 0.7 * R * np.cos(ang), cv + 0.7 * R * np.sin(ang), rr, rr, 0.6)
        )
    layer *= rng.uniform(0.26, 0.34) * p.lung(u, v, side)
    return Finding("mass", win, layer)


def _patchy(rng, u, v, centers, radii, amp):
    """Patchy, ill-defined opacity: overlapping soft blobs modulated by a coarse random texture."""
    layer = np.zeros(u.shape if u.shape == v.shape else np.broadcast(u, v).shape, np.float32)
    for (bu, bv), br in zip(centers, radii):
        layer += blob(u, v, bu, bv, br, br * rng.uniform(0.7, 1.2), 2.0)
    h, w = layer.shape
    tex = rng.uniform(0.4, 1.0, size=(max(2, h // 10), max(2, w // 10))).astype(np.float32)
    layer *= cv2.resize(tex, (w, h), interpolation=cv2.INTER_CUBIC)
    return amp * clip(layer, 0, 1)


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
        wall = clip(1 - ((rho - 1) / 0.45) ** 2, 0, 1)
        layer = np.maximum(layer, 0.3 * wall) - 0.08 * clip(1 - rho * rho, 0, 1)
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
    d = clip(side * (u - p.cx) / p.tw, 0, 1.2)
    meniscus = top - rng.uniform(0.06, 0.12) * d**2.5  # rises along the lateral chest wall
    fluid = ramp(v - meniscus, 0.025) * (0.8 + 0.2 * ramp(v - meniscus - 0.05, 0.1))
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
    reach = ramp(low - v, 0.04)
    reach *= ramp(side * (u - p.cx) - p.tw * 0.45, 0.1)  # apical and lateral, not medial
    band = ramp(level - L, 0.02) * lung * reach
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
    arc = ramp(theta - t0, 0.15) * ramp(t1 - theta, 0.15)
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
    fv = t_centre + (-0.02 * d + p.rib_curve * d * d)  # inverse of Patient.rib_t
    spacing = kn[k + 1] - kn[k]
    win = p.window(fu, fv, 1.6 * spacing, 1.4 * spacing)
    u, v = p.coords(win)
    t = p.rib_t(u, v)
    s = side * (u - fu)  # signed distance from the fracture, lateral positive
    frag = 1.2 * spacing
    step = rng.choice([-1, 1]) * spacing * rng.uniform(0.3, 0.4)
    shift = step * ramp(s, 0.004) * clip(1 - s / frag, 0, 1)
    line = np.exp(-((s / max(2.0 / p.size, 0.005)) ** 2))
    gap = 1 - line
    new = p.rib_profile(t - shift, k) * gap
    callus = 0.5 * blob(u, v, fu, fv, 0.6 * spacing, 0.45 * spacing, 2.0)
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
    return Finding("cardiomegaly", win, box=box_from_support(visible.astype(np.float32), win, 0.5), ctr=ctr)


def draw_finding(p, name, rng):
    """The findings of class ``name`` (one, or two for bilateral tuberculosis or a second nodule)."""
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


def tight_box(finding):
    """The box of a finding drawn as a ``layer`` and/or a ``markings`` change: the tight box of the
    pixels where the change reaches :data:`~oxnet.data.synthetic.primitives.BOX_LEVEL` of its peak."""
    support = np.abs(finding.layer) if finding.layer is not None else 0
    if finding.markings is not None:
        support = np.maximum(support / max(float(np.max(support)), 1e-6), 1 - finding.markings)
    return box_from_support(support, finding.window)
