"""The anatomy of one synthetic patient: thorax, lungs, heart, aortic knob, diaphragm and ribs.

Coordinates are normalized by the image size and rotation-corrected (u right, v down). The patient
faces the viewer, so the patient's left (aortic knob, cardiac apex) is on the image's right.
"""

import numpy as np

from .primitives import clip, pixel_grid, ramp

__all__ = ["Patient"]


class Patient:
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
        gx, gy = pixel_grid(self.size)
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
        return ramp(q, 0.12)

    def knob_centre(self):
        """The aortic knob bulges from the upper mediastinum on the patient's left (image right)."""
        return self.cx + self.med_w + 0.2 * self.knob_r, self.knob_v

    def knob(self, u, v):
        ku, kv = self.knob_centre()
        return ramp(1 - ((u - ku) / self.knob_r) ** 2 - ((v - kv) / (1.3 * self.knob_r)) ** 2, 0.3)

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
        m = ramp(self.lung_level(u, v, side), 0.05)
        m *= ramp(d - self.med_w, 2 * px)
        m *= ramp(self.dome(u, side) - v, 2 * px)
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
        z = 2 * clip(z * 2, 0, 1) - 1  # -1..1 over the upper half, 1 over the lower half
        return np.sqrt(clip(1 - z * z, 0, 1)) * (0.75 + 0.25 * z * z)

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
        lateral = ramp(self.tw * 1.02 - np.abs(u - self.cx), 0.02)
        return bone * lateral
