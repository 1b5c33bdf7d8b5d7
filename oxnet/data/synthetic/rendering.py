"""Rendering a patient and its findings: the attenuation map's layers and the simulated acquisition.

The map is built up in this order: body (soft tissue, abdomen, spine), lung fields with vascular
markings (hidden where a finding says so), mediastinum and ribs, clavicles, minus the air of the lungs,
plus the findings' layers; then blur, noise, gain, offset and gamma turn it into the image.
"""

import cv2
import numpy as np

from .primitives import clip, ramp

__all__ = ["render_scene"]


def render_scene(p, drawn, noise_rng):
    """Float32 HxW image in [0, 1] of patient ``p`` with the findings ``drawn``; ``noise_rng`` draws
    the image noise."""
    u, v = p.coords()
    dia = p.diaphragm(u)
    A = _body(p, u, v, dia)
    lungs, air = _lung_fields(p, u, v)
    for f in drawn:
        if f.markings is not None:  # markings are hidden by fluid or absent outside a collapsed lung
            m = f.markings
            air[f.window] = air[f.window] * m + (1 - m) * lungs[f.window] * p.lung_depth
    _add_thorax(p, A, u, v, dia, lungs)
    _add_clavicles(p, A)
    A -= air
    for f in drawn:
        if f.layer is not None:
            A[f.window] += f.layer
    return _acquire(p, A, noise_rng)


def _body(p, u, v, dia):
    """Attenuation of the body outside the lungs: neck, shoulders and chest wall (soft tissue thickest
    in the middle), the abdomen below the diaphragm ``dia`` and the spine."""
    ad = np.abs(u - p.cx)
    bw = p.tw * 1.22 - (p.tw * 1.22 - 0.09) * ramp(p.v_apex + 0.02 - v, 0.14)
    rel = ad / bw
    A = ramp(bw - ad, 0.02) * (p.soft + 0.15 * clip(1 - rel * rel, 0, 1))
    A += 0.06 * ramp(v - dia, 0.02) * (A > 0.1)  # abdomen
    win = p.window(p.cx, 0.55, 0.05, 0.6)  # spine
    uw, vw = u[win], v[win]
    A[win] += (
        0.05
        * ramp(0.04 - np.abs(uw - p.cx), 0.01)
        * (0.85 + 0.15 * np.cos(vw * (2 * np.pi / 0.045)))
        * ramp(vw - p.v_apex + 0.1, 0.05)
    )
    return A


def _lung_fields(p, u, v):
    """(lungs, air): the soft mask of both lung fields and their air, less the vascular markings
    radiating from the hila; each lung is drawn in its own window."""
    S = p.size
    lungs = np.zeros((S, S), np.float32)
    air = np.zeros((S, S), np.float32)
    tex = _markings_texture(p)
    for side in (-1, 1):
        d0, d1 = p.med_w, p.tw * 1.04
        v0, v1 = p.v_apex - 0.01, p.v_dia + 0.13
        win = p.window(p.cx + side * (d0 + d1) / 2, (v0 + v1) / 2, (d1 - d0) / 2, (v1 - v0) / 2)
        uw, vw = u[win], v[win]
        lung = p.lung(uw, vw, side)
        lungs[win] = np.maximum(lungs[win], lung)
        depth = p.lung_depth * (0.82 + 0.18 * ramp(vw - p.v_apex - 0.15, 0.3))
        hu, hv = p.cx + side * p.tw * 0.3, p.v_apex + 0.28
        hilum = 0.07 * clip(1 - ((uw - hu) / 0.07) ** 2 - ((vw - hv) / 0.1) ** 2, 0, 1)
        air[win] += lung * (depth - hilum - _markings(p, tex, uw - hu, vw - hv))
    return lungs, air


def _markings_texture(p):
    rng = np.random.default_rng(p.markings_seed)
    tex = rng.standard_normal((96, 720)).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), sigmaX=2.0, sigmaY=1.5, borderType=cv2.BORDER_REFLECT)
    return tex / (tex.std() + 1e-6)


def _markings(p, tex, dx, dy):
    """Vessel-like lines (zero crossings of a polar noise texture) fading away from the hilum."""
    r, th = cv2.cartToPolar(np.ascontiguousarray(dx, np.float32), np.ascontiguousarray(dy, np.float32))
    mx = th * np.float32(tex.shape[1] / (2 * np.pi))
    my = np.sqrt(r) * np.float32(tex.shape[0] / 0.65)
    t = cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return p.markings_amp * np.exp(-(t * t) * 4.0 - r * 4.0)


def _add_thorax(p, A, u, v, dia, lungs):
    """Add the mediastinum (dense where there is no lung) and the posterior ribs to ``A`` in place."""
    win = p.window(p.cx, (p.v_apex + p.v_dia + 0.14) / 2, p.tw * 1.06, (p.v_dia + 0.2 - p.v_apex) / 2)
    uw, vw, lw = u[win], v[win], lungs[win]
    inside = ramp(dia[win] - vw, 0.02) * ramp(p.tw - np.abs(uw - p.cx), 0.02)
    A[win] += 0.05 * (1 - lw) * inside
    A[win] += p.rib_amp * p.ribs(uw, vw) * (0.25 + 0.75 * lw) * ramp(vw - p.v_apex + 0.04, 0.03)


def _add_clavicles(p, A):
    """Add both clavicles to ``A`` in place."""
    for side in (-1, 1):
        x0, y0 = p.cx + side * 0.035, p.v_apex + 0.07
        x1, y1 = p.cx + side * p.tw * 1.05, p.v_apex - 0.015
        win = p.window((x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2 + 0.02, abs(y1 - y0) / 2 + 0.03)
        uw, vw = p.coords(win)
        dx, dy = x1 - x0, y1 - y0
        L = np.hypot(dx, dy)
        along = ((uw - x0) * dx + (vw - y0) * dy) / L
        across = (-(uw - x0) * dy + (vw - y0) * dx) / L - 0.012 * np.sin(np.pi * along / L)
        bone = np.sqrt(clip(1 - (across / 0.012) ** 2, 0, 1)) * ramp(along, 0.01) * ramp(L - along, 0.02)
        A[win] += 0.13 * bone


def _acquire(p, A, noise_rng):
    """The image of attenuation map ``A``: blurred, with uniform noise of the patient's standard
    deviation, gain and offset, clipped to [0, 1] and gamma-corrected through a lookup table."""
    S = p.size
    if p.blur > 0.3:
        A = cv2.GaussianBlur(A, (0, 0), p.blur)
    noise = noise_rng.random((S, S), dtype=np.float32)  # uniform, scaled to the drawn standard deviation
    noise -= np.float32(0.5)
    noise *= np.float32(p.noise * np.sqrt(12))
    A += noise
    img = A * np.float32(p.gain) + np.float32(p.offset)
    clip(img, 0, 1, out=img)
    lut = np.linspace(0, 1, 4096, dtype=np.float32) ** np.float32(p.gamma)
    return lut[(img * 4095 + 0.5).astype(np.int16)]
