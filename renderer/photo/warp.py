"""Drawing the photo avatar: the portrait warped by its moved mesh, and the mouth's interior.

The warp is a backward map. skia draws the moved mesh into a low-resolution float surface whose colour is each
pixel's displacement back to where its content sits in the still portrait (a linear gradient shader read through
the per-vertex displacement as texture coordinates, so the interpolation is skia's, in float); OpenCV scales that
map up and `remap`s the portrait (bilinear) inside the box that moved. Everything outside the box is the still
portrait, copied. Measured on one core: a 1280x720 frame in a few milliseconds (benchmarks/render.py).

    warper = Warper(stage, triangles)        # stage: (H, W, 3) uint8, the portrait framed at the output size
    warper.draw(positions, sources, depth, out)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import skia
from numpy.typing import NDArray

STEP = 4  # the displacement map has one pixel per STEP x STEP output pixels
REACH_PX = 4096.0  # largest displacement the map holds (px); the gradient spans [-REACH_PX, REACH_PX]
_STILL_PX = 0.01  # a vertex that moves less than this counts as still


def _displacement_paint() -> skia.Paint:
    """A paint whose colour at texture coordinate (u, v) is (u, v) mapped from [-REACH, REACH] to red, green."""
    reach = REACH_PX
    black = skia.ColorSetARGB(255, 0, 0, 0)
    red = skia.GradientShader.MakeLinear([skia.Point(-reach, 0), skia.Point(reach, 0)], [black, skia.ColorRED])
    green = skia.GradientShader.MakeLinear([skia.Point(0, -reach), skia.Point(0, reach)], [black, skia.ColorGREEN])
    paint = skia.Paint(Shader=skia.Shaders.Blend(skia.BlendMode.kPlus, red, green))
    paint.setBlendMode(skia.BlendMode.kSrc)
    return paint


class Warper:
    """Warps a fixed (H, W, 3) uint8 `stage` by a triangle mesh, frame after frame (buffers reused)."""

    def __init__(self, stage: NDArray[np.uint8], triangles: NDArray[np.int32]) -> None:
        self.stage = stage
        self.height, self.width = stage.shape[:2]
        self.triangles = triangles
        low_h, low_w = -(-self.height // STEP), -(-self.width // STEP)
        self._low = np.zeros((low_h, low_w, 4), np.float32)
        self._surface = skia.Surface(self._low, colorType=skia.kRGBA_F32_ColorType, alphaType=skia.kPremul_AlphaType)
        self._canvas = self._surface.getCanvas()
        self._paint = _displacement_paint()
        ys, xs = (np.mgrid[0:low_h, 0:low_w].astype(np.float32) + 0.5) * STEP - 0.5
        self._centres = np.stack([xs, ys], axis=-1)  # (h, w, 2) output px of each map pixel's centre

    def draw(
        self,
        positions: NDArray[np.float64],
        sources: NDArray[np.float64],
        depth: NDArray[np.float64],
        out: NDArray[np.uint8],
    ) -> None:
        """Fill `out` (H, W, 3) with the stage warped so that the content at `sources` (V, 2) px appears at
        `positions` (V, 2) px; triangles are drawn far to near by their vertices' mean `depth` (V,)."""
        np.copyto(out, self.stage)
        moved = np.abs(positions - sources).max(axis=1) > _STILL_PX
        live = moved[self.triangles].any(axis=1)
        if not live.any():
            return
        box = self._box(positions[self.triangles[live].ravel()])
        if box is None:
            return
        bx0, by0, bx1, by1 = box
        coords = self._displacement(positions, sources, depth, box) + self._centres[by0:by1, bx0:bx1]
        full = cv2.resize(coords, ((bx1 - bx0) * STEP, (by1 - by0) * STEP), interpolation=cv2.INTER_LINEAR)
        # cv2.resize clamps the outer half map pixel; it holds no motion (the box has a still margin), so it is
        # left as the stage copy, except at the frame's own edges
        half = STEP // 2
        x0, y0 = bx0 * STEP + (half if bx0 > 0 else 0), by0 * STEP + (half if by0 > 0 else 0)
        x1 = min(bx1 * STEP - (half if bx1 < self._centres.shape[1] else 0), self.width)
        y1 = min(by1 * STEP - (half if by1 < self._centres.shape[0] else 0), self.height)
        mapped = full[y0 - by0 * STEP : y1 - by0 * STEP, x0 - bx0 * STEP : x1 - bx0 * STEP]
        cv2.remap(self.stage, mapped, None, cv2.INTER_LINEAR, dst=out[y0:y1, x0:x1], borderMode=cv2.BORDER_REPLICATE)

    def _box(self, points: NDArray[np.float64]) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) in map pixels around `points` (px), padded by one map pixel, inside the frame."""
        low_h, low_w = self._low.shape[:2]
        x0 = max(int(np.floor(points[:, 0].min() / STEP)) - 1, 0)
        y0 = max(int(np.floor(points[:, 1].min() / STEP)) - 1, 0)
        x1 = min(int(np.ceil(points[:, 0].max() / STEP)) + 2, low_w)
        y1 = min(int(np.ceil(points[:, 1].max() / STEP)) + 2, low_h)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _displacement(
        self,
        positions: NDArray[np.float64],
        sources: NDArray[np.float64],
        depth: NDArray[np.float64],
        box: tuple[int, int, int, int],
    ) -> NDArray[np.float32]:
        """(h, w, 2) the backward displacement (px) in the map pixels of `box`; 0 where no triangle lies."""
        x0, y0, x1, y1 = box
        low = (positions + 0.5) / STEP  # output pixel centres -> map coordinates
        back = sources - positions
        order = np.argsort(depth[self.triangles].mean(axis=1), kind="stable")  # far first
        vertices = skia.Vertices(
            skia.Vertices.kTriangles_VertexMode,
            list(map(skia.Point, low[:, 0].tolist(), low[:, 1].tolist())),
            list(map(skia.Point, back[:, 0].tolist(), back[:, 1].tolist())),
            None,
            self.triangles[order].ravel().tolist(),
        )
        canvas = self._canvas
        canvas.save()
        canvas.clipRect(skia.Rect.MakeLTRB(x0, y0, x1, y1))
        canvas.clear(skia.Color4f(0, 0, 0, 0))
        canvas.drawVertices(vertices, self._paint)
        canvas.restore()
        region = self._low[y0:y1, x0:x1]
        disp = (region[..., :2] * (2.0 * REACH_PX) - REACH_PX) * (region[..., 3:] > 0.5)
        return disp.astype(np.float32)


@dataclass(frozen=True)
class MouthColours:
    """The mouth interior's colours (RGB), taken from the portrait (see `mouth_colours`)."""

    cavity: tuple[int, int, int]
    teeth: tuple[int, int, int]
    tongue: tuple[int, int, int]


def mouth_colours(rgb: NDArray[np.uint8], lips: NDArray[np.float32], face: NDArray[np.float32]) -> MouthColours:
    """Colours of a mouth interior that match the portrait.

    `lips` (22, 2) is the outer lip contour (px), `face` (36, 2) the face oval. The cavity is the lips' median
    colour darkened to a sixth (lighter towards the lips), the tongue the lips' colour a little darker, the teeth
    a warm off-white no brighter than the face's brightest tenth (so that a dim photo gets dim teeth).
    """
    lip_mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(lip_mask, [np.round(lips).astype(np.int32)], 1)
    face_mask = np.zeros_like(lip_mask)
    cv2.fillPoly(face_mask, [np.round(face).astype(np.int32)], 1)
    lip = np.median(rgb[lip_mask > 0], axis=0) if lip_mask.any() else np.array([170.0, 90.0, 90.0])
    light = np.percentile(rgb[face_mask > 0].max(axis=1), 90) if face_mask.any() else 230.0
    teeth = np.array([236.0, 228.0, 212.0]) * min(1.0, light / 236.0 * 1.02)
    return MouthColours(cavity=_rgb8(lip * 0.16), teeth=_rgb8(teeth), tongue=_rgb8(lip * 0.82 + [12, 0, 4]))


def _rgb8(c: NDArray[np.floating]) -> tuple[int, int, int]:
    """An RGB colour as three ints in 0..255."""
    r, g, b = np.clip(np.round(c), 0, 255).astype(int)
    return int(r), int(g), int(b)


def _scaled(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """An RGB colour darkened (factor < 1)."""
    r, g, b = (min(255, round(c * factor)) for c in colour)
    return r, g, b


def _paint_patch(
    frame: NDArray[np.uint8], points: NDArray[np.float64], pad: float, paint: Callable[[skia.Canvas], None]
) -> None:
    """Run `paint` on a skia canvas (in frame px) over the patch of `frame` (H, W, 3) around `points` (N, 2) px,
    `pad` px wider, and write the patch back: only that patch is copied, whatever the frame's size."""
    x0, y0 = np.maximum(np.floor(points.min(axis=0) - pad).astype(int), 0)
    x1 = min(int(np.ceil(points[:, 0].max() + pad)), frame.shape[1])
    y1 = min(int(np.ceil(points[:, 1].max() + pad)), frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    patch = np.full((y1 - y0, x1 - x0, 4), 255, np.uint8)
    patch[..., :3] = frame[y0:y1, x0:x1]
    surface = skia.Surface(patch, colorType=skia.kRGBA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
    canvas = surface.getCanvas()
    canvas.translate(-x0, -y0)
    paint(canvas)
    del canvas, surface
    frame[y0:y1, x0:x1] = patch[..., :3]


def _path(points: NDArray[np.float64]) -> skia.Path:
    """A closed polygon through (N, 2) points."""
    path = skia.Path()
    path.addPoly([skia.Point(float(x), float(y)) for x, y in points], True)
    return path


@dataclass(frozen=True)
class Mouth:
    """Where the mouth interior is this frame, all (N, 2) px in output coordinates: the `opening` (the inner
    lips, a closed polygon), the `upper_teeth` line (fixed to the skull), the `lower_teeth` line (carried by the
    jaw), the `tongue` line (on the jaw, `tongue_out` in [0, 1] pushing it out over the lower lip), the
    `lower_lip` outer contour, `alpha` in [0, 1], how much the interior replaces the photo's own pixels, and
    `teeth` in [0, 1], how much of the teeth show (none behind lips pursed into a narrow opening)."""

    opening: NDArray[np.float64]
    upper_teeth: NDArray[np.float64]
    lower_teeth: NDArray[np.float64]
    lower_lip: NDArray[np.float64]
    tooth_px: float
    tongue_out: float
    alpha: float
    teeth: float = 1.0


class MouthPainter:
    """Draws the mouth interior (cavity, teeth, tongue) into the opening between the lips, in place on a frame."""

    def __init__(self, colours: MouthColours) -> None:
        self.colours = colours
        self._teeth = skia.Paint(AntiAlias=True, Color=skia.ColorSetRGB(*colours.teeth))
        self._lower_teeth = skia.Paint(AntiAlias=True, Color=skia.ColorSetRGB(*_scaled(colours.teeth, 0.78)))
        self._tongue = skia.Paint(AntiAlias=True, Color=skia.ColorSetRGB(*colours.tongue))
        self._shadow = skia.Paint(AntiAlias=True, Color=skia.ColorSetARGB(150, *colours.cavity))
        self._shadow.setStyle(skia.Paint.kStroke_Style)
        self._shadow.setMaskFilter(skia.MaskFilter.MakeBlur(skia.kNormal_BlurStyle, 1.5))
        self._cavity = skia.Paint(AntiAlias=True)

    def draw(self, frame: NDArray[np.uint8], mouth: Mouth) -> None:
        """Paint `mouth` onto `frame` (H, W, 3) uint8 in place (nothing when its alpha is 0)."""
        if mouth.alpha <= 0.0:
            return

        def paint(canvas: skia.Canvas) -> None:
            canvas.saveLayerAlpha(None, round(255 * mouth.alpha))
            self._interior(canvas, mouth)
            canvas.restore()
            if mouth.tongue_out > 0:
                self._tongue_out(canvas, mouth)

        _paint_patch(frame, np.concatenate([mouth.opening, mouth.lower_lip]), 2 + mouth.tooth_px, paint)

    def _interior(self, canvas: skia.Canvas, mouth: Mouth) -> None:
        """Clipped to the opening: a cavity darker towards its back, the upper teeth hanging from the skull, the
        lower teeth and the tongue riding on the jaw, and a soft shadow along the lips' inner edges."""
        opening = _path(mouth.opening)
        canvas.save()
        canvas.clipPath(opening, doAntiAlias=True)
        centre = mouth.opening.mean(axis=0)
        radius = max(float(np.ptp(mouth.opening[:, 0])) / 2, 1.0)
        colours = [skia.ColorSetRGB(*self.colours.cavity), skia.ColorSetRGB(*_scaled(self.colours.tongue, 0.45))]
        self._cavity.setShader(skia.GradientShader.MakeRadial(skia.Point(*centre), radius, colours))
        canvas.drawPath(opening, self._cavity)
        down = np.array([0.0, mouth.tooth_px])
        lower, upper = mouth.lower_teeth, mouth.upper_teeth
        canvas.drawPath(_path(np.concatenate([lower + 0.3 * down, lower[::-1] + 3.0 * down])), self._tongue)
        if mouth.teeth > 0.0:
            canvas.saveLayerAlpha(None, round(255 * mouth.teeth))
            canvas.drawPath(_path(np.concatenate([lower, lower[::-1] - 0.45 * down])), self._lower_teeth)
            canvas.drawPath(_path(np.concatenate([upper - down, upper[::-1] + 0.9 * down])), self._teeth)
            canvas.restore()
        self._shadow.setStrokeWidth(0.6 * mouth.tooth_px)
        canvas.drawPath(opening, self._shadow)
        canvas.restore()

    def _tongue_out(self, canvas: skia.Canvas, mouth: Mouth) -> None:
        """The tongue pushed out over the lower lip: an oval from the opening's middle, longer with tongue_out."""
        centre = mouth.lower_teeth.mean(axis=0)
        width = 0.55 * float(np.ptp(mouth.lower_teeth[:, 0]))
        reach = float(np.ptp(mouth.lower_lip[:, 1])) + 3.0 * mouth.tooth_px
        bottom = centre[1] + mouth.tongue_out * reach
        oval = skia.Rect.MakeLTRB(centre[0] - width / 2, centre[1] - mouth.tooth_px, centre[0] + width / 2, bottom)
        canvas.drawOval(oval, self._tongue)
