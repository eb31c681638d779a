"""The 52 blendshapes of the photo avatar, each a displacement field on the mesh (renderer.photo.mesh).

All fields live in the portrait's *face frame*: x along the line from the subject's right eye to the left one
(so +x is the subject's left, the image's right), y perpendicular to it and down, z towards the camera, in units
of the distance between the eye centres (IOD, about 6.3 cm). `displacement_fields` returns one (V, 3) field per
blendshape in that frame; a field is what the mesh moves for one unit of its blendshape.

The fields are smooth falloffs around landmark groups, of three kinds:

- contour fields: a lid or lip contour moves (e.g. the upper lid towards the lower lid) and the skin on the far
  side of the contour follows with a falloff (`Geometry.spread`), so a blink closes with the portrait's own lid
  skin and nothing on the other side of the eye or mouth opening moves;
- the jaw: everything below the mouth line (`Geometry.jaw`) moves down and back, most at the chin and the lower
  lip's middle, least at the mouth corners (the opening takes the inner lips' lens shape) and the jaw's hinge;
- blobs: a compact smooth bump (`Geometry.blob`) around an anchor moves brows, cheeks, nose and mouth corners.

| blendshape | field (amplitude in IOD per unit) |
|---|---|
| browDown L/R | the brow down 0.24 (inner end 0.29) and in 0.07 (0.11), the skin below it squeezed to the lid |
| browInnerUp | both inner brow ends up 0.3, the forehead above them up less, the lid skin below stretching |
| browOuterUp L/R | the outer brow end up 0.12 |
| cheekPuff | both cheeks out 0.09 and forward 0.08 |
| cheekSquint L/R | the cheek below the eye up 0.06, the lower lid up a quarter of the eye opening |
| eyeBlink L/R | the upper lid down to the lower lid (which yields 10 %), its skin stretching over the eye (`Rig`) |
| eyeLook* L/R | the lids follow the gaze (down: the upper lid lowers); the iris itself moves in `Rig` |
| eyeSquint L/R | the lower lid rises 45 % and the upper lid lowers 10 % of the opening |
| eyeWide L/R | the upper lid rises 35 % of the opening |
| jawForward | the lower face forward 0.10 and down 0.03 |
| jawLeft/Right | the lower face sideways 0.12 |
| jawOpen | the lower face down 0.7 and back 0.15 (the jaw) |
| mouthClose | the lower lip up 0.42 (applied only as far as jawOpen, see `Rig`) |
| mouthDimple L/R | the mouth corner out 0.05 and back 0.05 |
| mouthFrown L/R | the mouth corner down 0.09 and out 0.02 |
| mouthFunnel | the mouth narrowed to 30 % of its width, jaw down 0.12, lips forward 0.1, flared (up 0.06, down 0.08) |
| mouthLeft/Right | the whole mouth sideways 0.12 |
| mouthLowerDown L/R | that half of the lower lip down 0.09 |
| mouthPress L/R | that half of each lip thins (outer edge 60 % towards the inner edge), the lips close 0.03 each |
| mouthPucker | corners in 0.22, the lips forward 0.1 |
| mouthRollLower/Upper | that lip rolls in: its outer edge moves 70 % towards its inner edge |
| mouthShrugLower | the lower lip and chin up 0.06 |
| mouthShrugUpper | the upper lip up 0.04 |
| mouthSmile L/R | the mouth corner up 0.17, out 0.12 and back 0.05; the cheek above it up 0.05 |
| mouthStretch L/R | the mouth corner out 0.09 and down 0.05 |
| mouthUpperUp L/R | that half of the upper lip up 0.07 |
| noseSneer L/R | the nose wing up 0.06 and that half of the upper lip up 0.03 |
| tongueOut | the lower lip down 0.08 (the tongue itself is drawn by `renderer.photo.warp`) |

The amplitudes were tuned by closing the loop through the engine's tracker (tests/renderer/test_photo_loop.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from renderer.face import BLENDSHAPE_NAMES
from renderer.photo.mesh import (
    BROW_LOWER,
    BROW_UPPER,
    CHEEK,
    CHEEKBONE,
    CHIN,
    EYE_LOWER,
    EYE_ROW,
    EYE_UPPER,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    NOSE_WING,
    SIDES,
)

Field = NDArray[np.float32]  # (V, 3) displacement in face units
MOUTH_CORNER = {"Right": (61, 78), "Left": (291, 308)}  # outer and inner corner landmarks
LID_MEET = 1.1  # a closed eye's upper lid comes down to the lower lid, which yields a tenth of the opening
LID_SKIN_REACH = 0.22  # face units: the skin above the upper lid follows it over at most this distance
BROW_FADE = 0.15  # face units: a brow's motion fades over this much beyond its ends
BROW_DOWN = 0.22  # face units a lowered brow comes down where most (a little inside its middle: BROW_PEAK along it
BROW_PEAK = 0.6  # from its outer end, falling off over BROW_SPREAD to BROW_OUTER_DOWN of that), and at most
BROW_SPREAD = 0.8  # BROW_SQUEEZE of the skin's height between the brow and the upper lid (or a glasses frame)
BROW_OUTER_DOWN = 0.5
BROW_SQUEEZE = 0.7
BROW_HOOD = 0.15  # a lowered brow also lowers the upper lid this much of the eye opening (it hoods the eye)
BROW_IN = 0.06  # face units a lowered brow's inner half moves in (towards the nose)
BROW_OVER_FRAME = 0.05  # face units: behind glasses, a brow's motion fades out over at least this above the frame
BROW_INNER_UP = 0.2  # face units the inner ends of raised brows go up
LASH_SKIP = 0.07  # face units above the lid's edge that hold the lashes (dark, but not an obstacle)
OBSTACLE = 0.45  # darker than this fraction of the skin above the lashes: an edge the lid skin must not pass
GLASSES_COLUMNS = 9  # a glasses frame's top is measured at this many columns along each brow...
GLASSES_SHARE = 0.6  # ... and it is one where at least this share of them finds it


def falloff(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """A smooth compact bump of a distance ratio: 1 at 0, 0 from 1 on (C1: (1 - t²)²)."""
    return np.clip(1.0 - np.square(t), 0.0, 1.0) ** 2


def lid_reach(gray: NDArray[np.uint8], landmarks: NDArray[np.floating], unit: float) -> dict[str, float]:
    """How far (face units) the skin above each upper lid may stretch over the eye: up to LID_SKIN_REACH, but
    short of the first dark edge above the lashes (glasses' frames, a deep crease), so a blink does not drag
    it down. `gray` is the photo (H, W) uint8, `landmarks` (478, 3) in its px, `unit` its eye distance in px."""
    out = {}
    for side in ("Left", "Right"):
        upper = landmarks[list(EYE_UPPER[side])]
        skin = float(np.median(gray[_pixels(gray, landmarks[list(EYE_LOWER[side]), :2] + [0.0, 0.15 * unit])]))
        reach = LID_SKIN_REACH
        for point in upper[3:-3, :2]:  # the middle three columns
            heights = np.arange(LASH_SKIP, LID_SKIN_REACH, 0.01)
            column = gray[_pixels(gray, point - np.outer(heights * unit, [0.0, 1.0]))]
            dark = np.nonzero(column < OBSTACLE * skin)[0]
            if len(dark):
                reach = min(reach, max(0.8 * float(heights[dark[0]]), 0.06))
        out[side] = reach
    return out


def glasses_top(
    gray: NDArray[np.uint8], landmarks: NDArray[np.floating], unit: float
) -> dict[str, NDArray[np.float64]]:
    """{side: (GLASSES_COLUMNS,) how far (face units) above the upper lid the top of a glasses frame's bar is, at
    columns evenly spread from the brow's outer end (first) to its inner end; all NaN where there is none}.

    A frame is a run of pixels darker than OBSTACLE of the skin below the eye that starts between the lashes and
    the brow's lower edge (a dark brow itself starts above that) in at least GLASSES_SHARE of the columns; its top
    is where that run ends, going up (smoothed along the brow: `_smooth_bar`). `gray` (H, W) uint8, `landmarks`
    (478, 3) in its px, `unit` px per face unit.
    """
    out = {}
    for side in ("Left", "Right"):
        skin = float(np.median(gray[_pixels(gray, landmarks[list(EYE_LOWER[side]), :2] + [0.0, 0.15 * unit])]))
        lid, lower, upper = (_sorted_contour(landmarks[list(c[side]), :2]) for c in (EYE_UPPER, BROW_LOWER, BROW_UPPER))
        ends = landmarks[[BROW_LOWER[side][0], BROW_LOWER[side][-1]], 0]
        tops = []
        for x in np.linspace(ends[0], ends[1], GLASSES_COLUMNS):
            lid_y, lower_y, upper_y = (float(np.interp(x, c[:, 0], c[:, 1])) for c in (lid, lower, upper))
            heights = np.arange(LASH_SKIP, (lid_y - upper_y) / unit + 0.05, 0.005)
            dark = gray[_pixels(gray, np.stack([np.full_like(heights, x), lid_y - heights * unit], axis=1))] < (
                OBSTACLE * skin
            )
            start = int(np.argmax(dark)) if dark.any() else len(dark)
            if start == len(dark) or heights[start] > (lid_y - lower_y) / unit - 0.03:
                tops.append(np.nan)
                continue
            stop = start + int(np.argmin(dark[start:])) if not dark[start:].all() else len(dark) - 1
            tops.append(float(heights[stop]))
        found = np.array(tops)
        out[side] = _smooth_bar(found) if np.isfinite(found).mean() >= GLASSES_SHARE else np.full_like(found, np.nan)
    return out


def _smooth_bar(tops: NDArray[np.float64]) -> NDArray[np.float64]:
    """A frame bar's top heights along a brow (NaN where not found) as the parabola through those found: a bar
    is smooth, while single columns catch brow hairs or the frame's own highlights."""
    t = np.linspace(0.0, 1.0, len(tops))
    found = np.isfinite(tops)
    return np.asarray(np.polyval(np.polyfit(t[found], tops[found], 2), t), np.float64)


def _pixels(gray: NDArray[np.uint8], points: NDArray[np.floating]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(rows, cols) of the pixels under (N, 2) px points, clipped to the image."""
    xs = np.clip(np.round(points[:, 0]).astype(np.intp), 0, gray.shape[1] - 1)
    ys = np.clip(np.round(points[:, 1]).astype(np.intp), 0, gray.shape[0] - 1)
    return ys, xs


def _sorted_contour(points: NDArray[np.floating]) -> NDArray[np.floating]:
    """A contour's points in increasing x (for np.interp)."""
    return points[np.argsort(points[:, 0], kind="stable")]


class Geometry:
    """Region helpers over the mesh's vertices `v` (V, 3) and the landmarks `lm` (478, 3), both in face units;
    `lid_reach` and `glasses` are the portrait's (see `lid_reach`, `glasses_top`; none when not given)."""

    def __init__(
        self,
        v: NDArray[np.float64],
        lm: NDArray[np.float64],
        lid_reach: dict[str, float] | None = None,
        glasses: dict[str, NDArray[np.float64]] | None = None,
    ) -> None:
        self.v, self.lm = v, lm
        self.lid_reach = lid_reach or {side: LID_SKIN_REACH for side in ("Left", "Right")}
        self.glasses = glasses or {side: np.full(GLASSES_COLUMNS, np.nan) for side in ("Left", "Right")}
        self.x, self.y = v[:, 0], v[:, 1]
        corners = lm[[61, 291]]
        self.mouth_x = float(corners[:, 0].mean())
        self.mouth_half = float(abs(corners[1, 0] - corners[0, 0]) / 2)
        self.chin_y = float(lm[CHIN, 1])
        self._jaw = self._jaw_weight()

    def contour_y(self, indices: tuple[int, ...]) -> NDArray[np.float64]:
        """(V,) the y of a contour (landmark indices) above or below each vertex, extended flat past its ends."""
        c = _sorted_contour(self.lm[list(indices)])
        return np.interp(self.x, c[:, 0], c[:, 1])

    def mouth_u(self) -> NDArray[np.float64]:
        """(V,) x across the mouth: -1 at the subject's right corner, +1 at the left one (not clipped)."""
        return (self.x - self.mouth_x) / self.mouth_half

    def blob(
        self, centre: NDArray[np.float64], rx: float, ry: float, ry_up: float | None = None
    ) -> NDArray[np.float64]:
        """(V,) a smooth bump around `centre` (x, y) with radii rx and ry (ry_up above the centre, if given)."""
        dy = self.y - centre[1]
        ry_side = np.where(dy < 0, ry if ry_up is None else ry_up, ry)
        return falloff(np.hypot((self.x - centre[0]) / rx, dy / ry_side))

    def spread(self, indices: tuple[int, ...], moves: NDArray[np.float64], up: bool, reach: float) -> Field:
        """(V, 3) a contour moving by `moves` (n, 3), the skin on one side (above it if `up`) following.

        Vertices on the other side of the contour do not move; the contour's end points must not move either
        (so nothing past its ends moves). Each vertex takes the motion of the contour above/below it, fading over
        `reach` (face units) with its distance from the contour.
        """
        order = np.argsort(self.lm[list(indices), 0], kind="stable")
        xs = self.lm[list(indices), 0][order]
        gap = self.y - np.interp(self.x, xs, self.lm[list(indices), 1][order])
        distance = -gap if up else gap
        weight = np.where(distance >= -1e-6, falloff(np.maximum(distance, 0.0) / reach), 0.0)
        motion = np.stack([np.interp(self.x, xs, moves[order, k]) for k in range(3)], axis=1)
        return (weight[:, None] * motion).astype(np.float32)

    def _jaw_weight(self) -> NDArray[np.float64]:
        """(V,) 1 on what the jaw carries (below the mouth line), 0 above it; 0.5 at the mouth corners."""
        inner = (self.lm[list(LIPS_INNER_UPPER)] + self.lm[list(LIPS_INNER_LOWER)]) / 2
        line = _sorted_contour(inner)
        signed = self.y - np.interp(self.x, line[:, 0], line[:, 1])
        past_corner = np.clip(np.abs(self.mouth_u()) - 1.0, 0.0, 1.0)
        width = 0.02 + 0.25 * past_corner  # sharp between the lips, soft over the cheeks
        weight = np.clip(0.5 + 0.5 * signed / width, 0.0, 1.0)
        weight = weight * weight * (3 - 2 * weight)  # smoothstep
        n = len(self.v)
        weight[[i for i in LIPS_INNER_UPPER + LIPS_OUTER_UPPER if i < n]] = 0.0
        weight[[i for i in LIPS_INNER_LOWER + LIPS_OUTER_LOWER if i < n]] = 1.0
        weight[[61, 291, 78, 308]] = 0.5
        return weight

    def jaw(self) -> NDArray[np.float64]:
        """(V,) how far each vertex moves with the jaw: the jaw region, lens-shaped at the lips, fading at the
        face's sides and below the chin."""
        u = self.mouth_u()
        lens = 1.0 - 0.65 * np.clip(u, -1.0, 1.0) ** 2  # the lower lip's middle moves most
        below_lip = np.clip((self.y - self.contour_y(LIPS_OUTER_LOWER)) / 0.45, 0.0, 1.0)
        lens = lens + (1.0 - lens) * below_lip  # the chin moves as one
        sides = falloff(np.clip(np.abs(u) - 1.0, 0.0, None) * self.mouth_half / 0.95)
        neck = falloff(np.clip(self.y - self.chin_y, 0.0, None) / 0.7)
        return self._jaw * lens * sides * neck

    def lip(self, upper: bool) -> NDArray[np.float64]:
        """(V,) one lip (1 on it), fading over the skin beyond its outer edge and past the mouth corners."""
        if upper:
            beyond = np.maximum(self.contour_y(LIPS_OUTER_UPPER) - self.y, 0.0)
            region = 1.0 - self._jaw
        else:
            beyond = np.maximum(self.y - self.contour_y(LIPS_OUTER_LOWER), 0.0)
            region = self._jaw
        inside = falloff(np.clip(np.abs(self.mouth_u()) - 1.0, 0.0, None) * self.mouth_half / 0.25)
        return region * inside * falloff(beyond / 0.2)

    def half(self, side: str) -> NDArray[np.float64]:
        """(V,) 1 on the mouth's `side` half, 0 on the other, blending across the middle."""
        u = self.mouth_u() * (1.0 if side == "Left" else -1.0)
        return np.clip(0.5 + u / 0.6, 0.0, 1.0)

    def lid_gaps(self, side: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(9,), (9,): how far below each upper-lid point the lower lid is, and how far above each lower-lid
        point the upper lid is, measured straight down the face (so closing lids meet along a smooth line)."""
        upper, lower = self.lm[list(EYE_UPPER[side])], self.lm[list(EYE_LOWER[side])]
        lo, up = _sorted_contour(lower), _sorted_contour(upper)
        return np.interp(upper[:, 0], lo[:, 0], lo[:, 1]) - upper[:, 1], lower[:, 1] - np.interp(
            lower[:, 0], up[:, 0], up[:, 1]
        )

    def lids(self, side: str, upper_close: float, lower_close: float) -> Field:
        """(V, 3) the upper lid closing `upper_close` and the lower lid `lower_close` of the opening (negative:
        opening), the lid skin following; the eye's middle row stays halfway between the lids."""
        below, above = self.lid_gaps(side)
        down = np.zeros((9, 3))
        down[:, 1] = 1.0
        reach = self.lid_reach[side]
        field = self.spread(EYE_UPPER[side], upper_close * below[:, None] * down, up=True, reach=reach)
        field += self.spread(EYE_LOWER[side], -lower_close * above[:, None] * down, up=False, reach=0.16)
        row = np.arange(EYE_ROW[side], EYE_ROW[side] + 7)
        field[row] = 0.5 * (field[list(EYE_UPPER[side][1:-1])] + field[list(EYE_LOWER[side][1:-1])])
        return field

    def lip_thin(self, upper: bool, fraction: float, side: str | None = None) -> Field:
        """(V, 3) a lip's outer edge moving `fraction` of the way to its inner edge (on one half, if `side`): the
        lip between its edges moves in proportion to the distance from its inner edge, the skin beyond follows."""
        outer, inner = (LIPS_OUTER_UPPER, LIPS_INNER_UPPER) if upper else (LIPS_OUTER_LOWER, LIPS_INNER_LOWER)
        y_out, y_in = self.contour_y(outer), self.contour_y(inner)
        depth = (y_in - self.y) if upper else (self.y - y_in)  # >= 0 on the lip's side of its inner edge
        thickness = np.maximum(np.abs(y_in - y_out), 1e-6)
        profile = np.clip(depth / thickness, 0.0, 1.0) * falloff(np.maximum(depth - thickness, 0.0) / 0.15)
        region = (1.0 - self._jaw) if upper else self._jaw
        inside = falloff(np.clip(np.abs(self.mouth_u()) - 1.0, 0.0, None) * self.mouth_half / 0.25)
        weight = np.where(depth >= 0, region * inside * profile, 0.0)
        if side is not None:
            weight = weight * self.half(side)
        return _vec(weight * fraction * (y_in - y_out), 0.0, 1.0)


def _vec(weight: NDArray[np.float64], dx: float, dy: float, dz: float = 0.0) -> Field:
    """(V, 3) weight times one displacement vector."""
    return (weight[:, None] * np.array([dx, dy, dz])).astype(np.float32)


def _sx(side: str) -> float:
    """+1 for the subject's left (+x in the face frame), -1 for the right."""
    return 1.0 if side == "Left" else -1.0


def _corner(g: Geometry, side: str, rx: float = 0.42, ry: float = 0.36) -> NDArray[np.float64]:
    """(V,) a bump around one mouth corner."""
    outer, inner = MOUTH_CORNER[side]
    return g.blob((g.lm[outer] + g.lm[inner]) / 2, rx, ry)


def _smoothstep(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """0 below 0, 1 above 1, smooth (C1) between."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _brow_along(g: Geometry, side: str) -> NDArray[np.float64]:
    """(V,) each vertex's place along one brow: 0 at its outer end, 1 at its inner end (beyond: < 0 or > 1)."""
    outer, inner = g.lm[BROW_LOWER[side][0], 0], g.lm[BROW_LOWER[side][-1], 0]
    return (g.x - outer) / (inner - outer)


def _brow_floor(g: Geometry, side: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(V,), (V,): where a brow's motion starts to fade below it and where it has faded out, down each vertex's
    column: from the brow's lower edge to the upper lid; behind glasses from the brow's upper edge (at least
    BROW_OVER_FRAME above the frame) to the top of the frame's bar, so that the frame stays put (it sits on the
    nose) while the brow hair above it moves."""
    lid, lower = g.contour_y(EYE_UPPER[side]), g.contour_y(BROW_LOWER[side])
    tops = g.glasses[side]
    if not np.isfinite(tops).any():
        return lower, lid
    frame = lid - np.interp(_brow_along(g, side), np.linspace(0.0, 1.0, len(tops)), tops)
    return np.minimum(g.contour_y(BROW_UPPER[side]), frame - BROW_OVER_FRAME), frame


def _brow_ends(g: Geometry, side: str, inner: float = BROW_FADE) -> NDArray[np.float64]:
    """(V,) 1 along a brow, fading beyond its outer end over BROW_FADE and beyond its inner end over `inner`."""
    u = _brow_along(g, side)
    length = abs(g.lm[BROW_LOWER[side][-1], 0] - g.lm[BROW_LOWER[side][0], 0])
    return falloff(np.maximum(-u, 0.0) * length / BROW_FADE) * falloff(np.maximum(u - 1.0, 0.0) * length / inner)


def _brow(g: Geometry, side: str, lateral: NDArray[np.float64]) -> NDArray[np.float64]:
    """(V,) how much of a brow's motion each vertex takes, for a `lateral` profile along it ((V,), from
    `_brow_along` and `_brow_ends`): the brow hair as one, the forehead above following less and less, the skin
    below less and less down to `_brow_floor` (stretched or squeezed evenly, never folded: see `_brow_room`)."""
    start, floor = _brow_floor(g, side)
    upper = np.minimum(g.contour_y(BROW_UPPER[side]), start)
    above = falloff(np.maximum(upper - g.y, 0.0) / 0.45)
    below = np.clip((floor - g.y) / np.maximum(floor - start, 1e-3), 0.0, 1.0)
    vertical = np.where(g.y < upper, above, np.where(g.y <= start, 1.0, below))
    return lateral * vertical


def _brow_room(g: Geometry, side: str) -> NDArray[np.float64]:
    """(V,) face units over which the skin below a brow stretches or squeezes (`_brow_floor`), down each column."""
    start, floor = _brow_floor(g, side)
    return np.maximum(floor - start, 0.0)


def _brow_down(g: Geometry, side: str) -> Field:
    """A frown's brow: lowered (most a little inside its middle, so its arch flattens), its inner half moved in, the
    skin below squeezed but never folded (a brow near its eye comes down less), the upper lid hooded a little."""
    u = _brow_along(g, side)
    weight = _brow(g, side, _brow_ends(g, side))
    slant = BROW_OUTER_DOWN + (1.0 - BROW_OUTER_DOWN) * falloff((u - BROW_PEAK) / BROW_SPREAD)
    drop = np.minimum(BROW_DOWN * slant, BROW_SQUEEZE * _brow_room(g, side))
    inward = -_sx(side) * BROW_IN * _smoothstep((u - 0.4) / 0.6)
    brow = np.stack([weight * inward, weight * drop, np.zeros_like(u)], axis=1).astype(np.float32)
    return brow + g.lids(side, BROW_HOOD, 0.0)


def _brows_inner_up(g: Geometry) -> Field:
    """Both brows' inner halves up BROW_INNER_UP, most at their inner ends, and the skin between them with them
    (each brow's motion fading out only at the other brow's inner end, the larger of the two taken, so the middle
    of the forehead rises as one instead of in a ridge)."""
    between = abs(g.lm[BROW_LOWER["Left"][-1], 0] - g.lm[BROW_LOWER["Right"][-1], 0])
    weights = [_brow(g, s, _brow_ends(g, s, between) * _smoothstep((_brow_along(g, s) - 0.25) / 0.75)) for s in SIDES]
    return _vec(np.maximum(*weights), 0.0, -BROW_INNER_UP)


def _both(make: Callable[[Geometry, str], Field], g: Geometry) -> Field:
    """A sided field made on both sides at once."""
    return make(g, "Left") + make(g, "Right")


def _pucker(g: Geometry, inward: float) -> Field:
    """Both mouth corners in by `inward`, the lips forward."""
    field = _both(lambda g, s: _vec(_corner(g, s), -_sx(s) * inward, 0.0, 0.05), g)
    return field + _vec(np.maximum(g.lip(True), g.lip(False)), 0.0, 0.0, 0.1)


def _squeeze(g: Geometry, fraction: float) -> Field:
    """The mouth narrowed towards its middle: each point between the corners in by `fraction` of its distance from
    the middle (so the lips keep their shape, only narrower), fading past the corners and above and below the lips."""
    u = g.mouth_u()
    beyond = np.clip(np.abs(u) - 1.0, 0.0, None) * g.mouth_half
    middle_y = (g.lm[13, 1] + g.lm[14, 1]) / 2
    weight = np.clip(u, -1.0, 1.0) * falloff(beyond / 0.35) * falloff(np.abs(g.y - middle_y) / 0.4)
    return _vec(weight, -fraction * g.mouth_half, 0.0)


def _ends(n: int) -> NDArray[np.float64]:
    """(n, 1) a profile along a contour of n points that is 0 at both ends and 1 in the middle."""
    t = np.linspace(-1.0, 1.0, n)
    return (1.0 - t**2)[:, None]


def _part_lips(g: Geometry, up: float, down: float) -> Field:
    """The inner lips parting: the upper one up by `up`, the lower one down by `down` (middle most)."""
    field = g.spread(LIPS_INNER_UPPER, np.array([0.0, -up, 0.0]) * _ends(11), up=True, reach=0.2)
    return field + g.spread(LIPS_INNER_LOWER, np.array([0.0, down, 0.0]) * _ends(11), up=False, reach=0.3)


def _lip_half(g: Geometry, s: str, upper: bool, dy: float) -> Field:
    return _vec(g.lip(upper) * g.half(s), 0.0, dy)


# Blendshapes without a side: name -> field.
BOTH: dict[str, Callable[[Geometry], Field]] = {
    "browInnerUp": _brows_inner_up,
    "cheekPuff": lambda g: _both(lambda g, s: _vec(g.blob(g.lm[CHEEK[s]], 0.4, 0.4), _sx(s) * 0.09, 0.0, 0.08), g),
    "jawForward": lambda g: _vec(g.jaw(), 0.0, 0.03, 0.10),
    "jawOpen": lambda g: _vec(g.jaw(), 0.0, 0.7, -0.15),
    "mouthClose": lambda g: _vec(g.jaw() * g.lip(False), 0.0, -0.42, 0.1),
    "mouthFunnel": lambda g: (
        _squeeze(g, 0.7)
        + _vec(np.maximum(g.lip(True), g.lip(False)), 0.0, 0.0, 0.1)
        + _vec(g.jaw(), 0.0, 0.12, 0.0)
        + _vec(g.lip(True), 0.0, -0.06)
        + _vec(g.lip(False), 0.0, 0.08)
    ),
    "mouthPucker": lambda g: _pucker(g, 0.22),
    "mouthRollLower": lambda g: g.lip_thin(False, 0.7),
    "mouthRollUpper": lambda g: g.lip_thin(True, 0.7),
    "mouthShrugLower": lambda g: _vec(np.maximum(g.lip(False), g.jaw() * 0.6), 0.0, -0.06),
    "mouthShrugUpper": lambda g: _vec(g.lip(True), 0.0, -0.04),
    "tongueOut": lambda g: _vec(g.lip(False), 0.0, 0.08),
}
# Blendshapes with a Left and a Right: stem -> field of the side ("Left" = the subject's left, +x).
SIDED: dict[str, Callable[[Geometry, str], Field]] = {
    "browDown": _brow_down,
    "browOuterUp": lambda g, s: _vec(
        _brow(g, s, _brow_ends(g, s) * (1.0 - _smoothstep(_brow_along(g, s) / 0.7))), 0.0, -0.12
    ),
    "cheekSquint": lambda g, s: _vec(g.blob(g.lm[CHEEKBONE[s]], 0.35, 0.3), 0.0, -0.06) + g.lids(s, 0.0, 0.25),
    "eyeBlink": lambda g, s: g.lids(s, LID_MEET, 1.0 - LID_MEET),
    "eyeLookDown": lambda g, s: g.lids(s, 0.3, 0.0),
    "eyeLookIn": lambda g, s: g.lids(s, 0.02, 0.0),
    "eyeLookOut": lambda g, s: g.lids(s, 0.02, 0.0),
    "eyeLookUp": lambda g, s: g.lids(s, -0.15, 0.0),
    "eyeSquint": lambda g, s: g.lids(s, 0.1, 0.45),
    "eyeWide": lambda g, s: g.lids(s, -0.35, 0.0),
    "jaw": lambda g, s: _vec(g.jaw(), _sx(s) * 0.12, 0.0),
    "mouth": lambda g, s: _vec(g.blob((g.lm[13] + g.lm[14]) / 2, 0.8, 0.5), _sx(s) * 0.12, 0.0),
    "mouthDimple": lambda g, s: _vec(_corner(g, s), _sx(s) * 0.05, 0.0, -0.05),
    "mouthFrown": lambda g, s: _vec(_corner(g, s), _sx(s) * 0.02, 0.09),
    "mouthLowerDown": lambda g, s: _lip_half(g, s, False, 0.09),
    "mouthPress": lambda g, s: (
        g.lip_thin(True, 0.6, s)
        + g.lip_thin(False, 0.6, s)
        + _part_lips(g, -0.03, -0.03) * g.half(s)[:, None].astype(np.float32)
    ),
    "mouthSmile": lambda g, s: (
        _vec(_corner(g, s), _sx(s) * 0.12, -0.17, -0.05) + _vec(g.blob(g.lm[CHEEK[s]], 0.35, 0.35), 0.0, -0.05)
    ),
    "mouthStretch": lambda g, s: _vec(_corner(g, s), _sx(s) * 0.09, 0.05),
    "mouthUpperUp": lambda g, s: _lip_half(g, s, True, -0.07),
    "noseSneer": lambda g, s: _vec(g.blob(g.lm[NOSE_WING[s]], 0.22, 0.25), 0.0, -0.06) + _lip_half(g, s, True, -0.03),
}


def field(name: str, geometry: Geometry) -> Field:
    """(V, 3) the field of one blendshape (a renderer.face name) in face units."""
    if name in BOTH:
        return BOTH[name](geometry)
    side = "Left" if name.endswith("Left") else "Right"
    return SIDED[name.removesuffix(side)](geometry, side)


def displacement_fields(geometry: Geometry) -> NDArray[np.float32]:
    """(52, V, 3) float32: each blendshape's field (renderer.face order) on the mesh of `geometry`, in face units."""
    return np.stack([field(name, geometry) for name in BLENDSHAPE_NAMES]).astype(np.float32)
