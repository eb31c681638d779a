"""Closing eyes: each eye of the portrait shut once, at preparation, and a closing upper lid painted into the still
portrait every frame, before the warp (so the head's pose and the other shapes move it like any other skin).

    box, shut = shut_eyes(rgb, landmarks, unit)      # preparation: the photo's eyes shut (a patch of the photo)
    lids = LidPainter(stage, shut_stage, landmarks, unit, lash)   # output px; shut_stage: the stage, eyes shut
    lids.paint(work, {"Left": 0.6, "Right": 0.0})                 # per frame, in place on a copy of the stage

A shut eye is the portrait's own lid skin: the eye opening, its lashes and the lid's margin are filled from the
skin around them (OpenCV's Telea inpainting, from above and from the eye's corners only, so that the lower lid's
lashes and a glasses frame below do not bleed in), and shaded as a lid over an eyeball (lighter where the
eyeball bulges, darker towards the lashes), so nothing is stretched. A closing lid uncovers that shut texture
above its edge, which moves from the upper lid down to where the lids meet; along the edge runs a thin, soft lash
line in the portrait's own lash colour, and the lid shades the eye below it.

All lengths are in face units (the distance between the eye centres, about 6.3 cm), converted with `unit` px.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from renderer.photo.mesh import EYE_LOWER, EYE_UPPER, SIDES

COVER_SIDE = (0.12, 0.05)  # a shut lid covers the opening and past its outer and inner corners this far (the
# lashes fan out past the outer corner)...
COVER_UP = 0.09  # ... above the upper lid's edge this far (its margin and lashes), less where a glasses frame or a
FRAME_GAP = 0.02  # ... dark crease is nearer (renderer.photo.fields.lid_reach): this far short of it...
COVER_DOWN = 0.05  # ... and below the lower lid's edge this far (its pale rim)
GRAIN_BAND = 0.06  # the skin's fine texture is mirrored in from this band below the cover (under the eye)...
GRAIN_MAX = 12.0  # ... each colour channel changed at most this much by it
MEET = 0.04  # a shut upper lid comes down this far past the lower lid's edge (over its rim)
BULGE = 0.05  # the shut lid is this much lighter over the eyeball's middle...
EDGE_SHADE = 0.12  # ... and this much darker at its edge (it curves away from the light towards the lashes)
LASH_BAND = 0.06  # the open eye's upper lashes: what is darker than the shut lid in this band above its edge
LASH_GAIN = 2.5  # their darkness is strengthened this much when they hang from a shut lid
LASH_WIDTH = 0.01  # the line where the lids meet: its half width (a Gaussian's sigma)...
LASH_LINE = 1.0  # ... and its opacity in the middle (it thins to nothing at the eye's corners)
SHADOW = 0.35  # a closing lid darkens the eye just below its edge this much...
SHADOW_REACH = 0.03  # ... fading over this distance
SOFT_EDGE = 0.006  # the lid's edge is antialiased over this width
FADE_IN = 0.15  # closures up to this fade the lid in, so that an eye starts to close continuously from open


def _contour(landmarks: NDArray[np.floating], indices: tuple[int, ...]) -> NDArray[np.float64]:
    """(9, 2) one lid's contour in px, outer corner to inner corner."""
    return np.asarray(landmarks[list(indices), :2], np.float64)


def _frame_of(upper: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The eye's own axes in px: `origin` its outer corner, `ex` towards its inner corner, `ey` down the face."""
    ex = upper[-1] - upper[0]
    ex /= max(float(np.linalg.norm(ex)), 1e-9)
    ey = np.array([-ex[1], ex[0]])
    return upper[0], ex, ey if ey[1] > 0 else -ey


@dataclass(frozen=True)
class EyeShape:
    """One eye over the pixels of a box of an image, each (h, w) array measured in px from the eye's outer
    corner `origin` (image px) along its axes `ex` (towards the inner corner) and `ey` (down the face): each
    pixel's position `along` and `down`, the upper and lower lids' edges above or below it (`top`, `bottom`,
    flat past the corners) and where the lids meet when shut (`meet`); `middle` 1 over the eye's middle, falling
    to 0 at its corners, `wide` the same over the eye lengthened by COVER_SIDE at its ends."""

    box: tuple[int, int, int, int]
    origin: NDArray[np.float64]
    ex: NDArray[np.float64]
    ey: NDArray[np.float64]
    along: NDArray[np.float64]
    down: NDArray[np.float64]
    top: NDArray[np.float64]
    bottom: NDArray[np.float64]
    meet: NDArray[np.float64]
    middle: NDArray[np.float64]
    wide: NDArray[np.float64]

    @classmethod
    def of(cls, landmarks: NDArray[np.floating], side: str, box: tuple[int, int, int, int], unit: float) -> EyeShape:
        """The eye `side` of (478, 3) `landmarks` (px) over the box (x0, y0, x1, y1) px; `unit` px per face unit."""
        upper, lower = _contour(landmarks, EYE_UPPER[side]), _contour(landmarks, EYE_LOWER[side])
        origin, ex, ey = _frame_of(upper)
        x0, y0, x1, y1 = box
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) - origin[::-1, None, None]
        along, down = xs * ex[0] + ys * ex[1], xs * ey[0] + ys * ey[1]
        (ux, uy), (lx, ly) = (((c - origin) @ np.stack([ex, ey], axis=1)).T for c in (upper, lower))
        top, bottom = np.interp(along, *_increasing(ux, uy)), np.interp(along, *_increasing(lx, ly))
        middle = _bump(along, ux.min(), ux.max())
        wide = _bump(along, ux.min() - COVER_SIDE[0] * unit, ux.max() + COVER_SIDE[1] * unit)
        return cls(box, origin, ex, ey, along, down, top, bottom, bottom + MEET * unit * middle, middle, wide)

    def covered(self, unit: float, up: float) -> NDArray[np.bool_]:
        """(h, w) the pixels a shut lid covers: a lens around the opening, `up` face units above it in the middle."""
        lens = self.wide**0.35  # blunt at the ends
        return (self.down >= self.top - up * unit * lens) & (self.down <= self.bottom + COVER_DOWN * unit * lens)

    def sample(self, image: NDArray[np.floating], down: NDArray[np.float64]) -> NDArray[np.float32]:
        """(h, w, C) float32: `image` (the box's own pixels) read straight up or down the face from each pixel, at
        its own `along` and the given `down` (h, w) (bilinear, reflected at the box's border)."""
        x0, y0 = self.box[:2]
        x = self.origin[0] - x0 + self.along * self.ex[0] + down * self.ey[0]
        y = self.origin[1] - y0 + self.along * self.ex[1] + down * self.ey[1]
        image = np.asarray(image, np.float32)
        out = cv2.remap(
            image, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        return np.asarray(out, np.float32).reshape(*x.shape, -1)


def _bump(along: NDArray[np.float64], start: float, end: float) -> NDArray[np.float64]:
    """(h, w) sin-shaped: 1 halfway between `start` and `end` (px along the eye), 0 at and beyond them."""
    t = (along - start) / max(end - start, 1e-6)
    return np.where((t > 0.0) & (t < 1.0), np.sin(np.pi * t), 0.0)


def _increasing(xs: NDArray[np.float64], ys: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A contour's (xs, ys) sorted by x (for np.interp)."""
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def shut_eyes(
    rgb: NDArray[np.uint8], landmarks: NDArray[np.floating], unit: float, reach: dict[str, float]
) -> tuple[NDArray[np.int64], NDArray[np.uint8]]:
    """The photo with both eyes shut, as (x0, y0, x1, y1) px and the (y1 - y0, x1 - x0, 3) uint8 patch of `rgb`
    there that replaces its pixels. `landmarks` (478, 3) px, `unit` the eye distance in px, `reach` {side: how far
    (face units) above each upper lid the skin goes before a dark edge} (renderer.photo.fields.lid_reach)."""
    eyes = np.concatenate([landmarks[list(EYE_UPPER[s] + EYE_LOWER[s]), :2] for s in SIDES])
    pad = 0.25 * unit
    x0, y0 = np.maximum(np.floor(eyes.min(axis=0) - pad), 0).astype(int)
    x1 = min(int(np.ceil(eyes[:, 0].max() + pad)), rgb.shape[1])
    y1 = min(int(np.ceil(eyes[:, 1].max() + pad)), rgb.shape[0])
    patch = rgb[y0:y1, x0:x1].copy()
    for side in SIDES:
        eye = EyeShape.of(landmarks, side, (int(x0), int(y0), x1, y1), unit)
        patch = _shut(patch, eye, unit, min(COVER_UP, reach[side] - FRAME_GAP))
    return np.array([x0, y0, x1, y1], np.int64), patch


def _shut(patch: NDArray[np.uint8], eye: EyeShape, unit: float, up: float) -> NDArray[np.uint8]:
    """`patch` with one eye shut: what a shut lid covers (`EyeShape.covered`, `up` face units above the upper
    lid) filled from the skin around it (Telea's inpainting), shaded as a lid over an eyeball, with the fine
    texture of the skin below the eye mirrored in, so that the lid is not a flat patch."""
    fill = eye.covered(unit, up).astype(np.uint8)
    skin = cv2.inpaint(patch, fill, max(2.0, 0.03 * unit), cv2.INPAINT_TELEA).astype(np.float32)
    depth = np.clip((eye.down - eye.top) / np.maximum(eye.meet - eye.top, 1.0), 0.0, 1.0)  # 0 at the upper lid
    shade = 1.0 + eye.middle * (BULGE * np.sin(np.pi * depth) - EDGE_SHADE * depth**2)
    smooth = cv2.GaussianBlur(patch, (0, 0), max(0.015 * unit, 0.7)).astype(np.float32)
    band = GRAIN_BAND * unit
    below = eye.bottom + COVER_DOWN * unit
    phase = np.mod(np.maximum(below - eye.down, 0.0), 2.0 * band)
    source = below + np.minimum(phase, 2.0 * band - phase) + 1.0
    grain = np.clip(eye.sample(patch.astype(np.float32) - smooth, source), -GRAIN_MAX, GRAIN_MAX)
    lid = skin * shade[..., None] + grain
    weight = cv2.GaussianBlur(fill.astype(np.float32), (0, 0), 0.7)[..., None] * (fill > 0)[..., None]
    return np.clip(np.round(patch + weight * (lid - patch)), 0, 255).astype(np.uint8)


def _luma(rgb: NDArray[np.float32]) -> NDArray[np.float32]:
    """(h, w) the brightness of (h, w, 3) RGB (BT.601 weights)."""
    return np.asarray(rgb @ np.array([0.299, 0.587, 0.114], np.float32), np.float32)


def _grown(mask: NDArray[np.bool_], radius: float) -> NDArray[np.bool_]:
    """`mask` dilated by a disc of `radius` px."""
    r = max(round(radius), 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), disc) > 0


def lash_colour(rgb: NDArray[np.uint8], landmarks: NDArray[np.floating], unit: float) -> tuple[int, int, int]:
    """The portrait's lash colour: the mean of the darkest sixth of the pixels along its upper lids' edges, in a
    band 0.03 face units wide just above each edge (where the lashes grow). `landmarks` (478, 3) px."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    for side in SIDES:
        edge = np.round(_contour(landmarks, EYE_UPPER[side]) - [0.0, 0.015 * unit]).astype(np.int32)
        cv2.polylines(mask, [edge], False, 1, max(1, round(0.03 * unit)))
    pixels = rgb[mask > 0].astype(np.float64)
    if not len(pixels):
        return (40, 30, 30)
    light = pixels.mean(axis=1)
    r, g, b = np.clip(np.round(pixels[light <= np.percentile(light, 16)].mean(axis=0)), 0, 255).astype(int)
    return int(r), int(g), int(b)


class _Eye:
    """One eye of the framed portrait: its box (output px), its still and shut pixels there, its shape."""

    def __init__(
        self, stage: NDArray[np.uint8], shut: NDArray[np.uint8], landmarks: NDArray[np.floating], side: str, unit: float
    ) -> None:
        points = landmarks[list(EYE_UPPER[side] + EYE_LOWER[side]), :2]
        pad = 0.18 * unit  # wider than what a shut lid covers and than its lashes hang
        height, width = stage.shape[:2]
        x0, y0 = np.maximum(np.floor(points.min(axis=0) - pad), 0).astype(int)
        x1, y1 = (min(int(np.ceil(points[:, k].max() + pad)), n) for k, n in ((0, width), (1, height)))
        self.box = np.s_[y0:y1, x0:x1]
        self.still = stage[self.box].astype(np.float32)
        self.shut = shut[self.box].astype(np.float32)
        self.shape = EyeShape.of(landmarks, side, (int(x0), int(y0), x1, y1), unit)
        self.lashes = self._lashes(unit)
        self.painted = False

    def _lashes(self, unit: float) -> NDArray[np.float32]:
        """(h, w) the open eye's upper lashes: how much darker than the shut lid's skin each pixel of the band
        above the upper lid's edge is (0 skin, 1 black), 0 elsewhere."""
        shut, still = _luma(self.shut), _luma(self.still)
        height = (self.shape.top - self.shape.down) / (LASH_BAND * unit)  # 0 at the edge, 1 at the band's top
        band = np.clip(np.minimum(height * 4.0, (1.0 - height) * 2.0), 0.0, 1.0)  # soft at both ends
        return np.asarray(np.clip((shut - still) / np.maximum(shut, 1.0), 0.0, 1.0) * band, np.float32)


class LidPainter:
    """Paints each eye's closing upper lid into a copy of the framed portrait (see the module docstring).

    `stage` and `shut_stage` (H, W, 3) uint8: the framed portrait, and the same with its eyes shut (shut_eyes);
    `landmarks` (478, 3) and `unit` in the same output px; `lash` the portrait's lash colour (RGB)."""

    def __init__(
        self,
        stage: NDArray[np.uint8],
        shut_stage: NDArray[np.uint8],
        landmarks: NDArray[np.floating],
        unit: float,
        lash: tuple[int, int, int],
    ) -> None:
        self.unit = unit
        self.eyes = {side: _Eye(stage, shut_stage, landmarks, side, unit) for side in SIDES}
        self.lash = np.array(lash, np.float32)

    def paint(self, work: NDArray[np.uint8], closures: dict[str, float]) -> None:
        """Paint each eye of `work` (H, W, 3) uint8, in place, `closures[side]` shut (0 open as in the portrait, 1
        shut); an eye back at 0 gets its portrait's pixels again."""
        for side, eye in self.eyes.items():
            closure = float(np.clip(closures[side], 0.0, 1.0))
            if closure > 0.0:
                work[eye.box] = self._closing(eye, closure)
                eye.painted = True
            elif eye.painted:
                work[eye.box] = eye.still.astype(np.uint8)
                eye.painted = False

    def _closing(self, eye: _Eye, closure: float) -> NDArray[np.uint8]:
        """(h, w, 3) uint8: one eye's box with its upper lid `closure` of the way down."""
        shape, unit = eye.shape, self.unit
        fade = min(closure / FADE_IN, 1.0)
        edge = shape.top + closure * (shape.meet - shape.top)
        below = shape.down - edge  # px below the lid's edge (negative: on the lid)
        cover = fade * np.clip(0.5 - below / (SOFT_EDGE * unit), 0.0, 1.0)
        out = eye.still + cover[..., None] * (eye.shut - eye.still)
        opening = (below > 0) & (shape.down < shape.meet)
        shadow = fade * SHADOW * np.exp(-np.maximum(below, 0.0) / (SHADOW_REACH * unit)) * opening
        out *= (1.0 - shadow)[..., None]
        # the portrait's own lashes, turned down from the lid's edge (a shut eye's lashes hang), over a thin line
        hanging = eye.shape.sample(eye.lashes, shape.top - np.maximum(below, 0.0))[..., 0] * (below > 0)
        line = LASH_LINE * shape.middle * np.exp(-0.5 * (below / (LASH_WIDTH * unit)) ** 2)
        lash = fade * np.maximum(np.clip(LASH_GAIN * hanging, 0.0, 1.0), line)
        out += lash[..., None] * (self.lash - out)
        return np.round(out).astype(np.uint8)
