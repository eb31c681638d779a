"""The vector avatar: a flat 2-D face drawn with skia, driven by one 58-float face frame (AvatarKind.VECTOR).

Every blendshape moves some part of the drawing (brows, lids, irises, cheeks, nose, jaw, lips, teeth, tongue);
pitch and yaw shift and foreshorten the features by their depth on the head (2.5-D parallax), roll rotates the
head about the neck and translation moves and scales the whole figure.

Geometry lives in "head units": the head spans x in [-1, 1] (image left to right), y grows downwards, the head
centre is the origin. Side ``s = +1`` is the subject's left (the image right, ARKit's ``...Left``), ``s = -1`` the
subject's right, so the drawing of ``mirror_face(face)`` is the horizontal mirror of the drawing of ``face``.

    avatar = VectorAvatar("glasses", width=640, height=360)  # or create_avatar("glasses", ...) (renderer.avatar)
    rgb = avatar.draw(face)  # (360, 640, 3) uint8, a view of a buffer reused by the next draw()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skia
from numpy.typing import NDArray

from renderer.avatar import Avatar, AvatarError, AvatarKind, Color, Framing, load_background, parse_background
from renderer.face import BLENDSHAPE_INDEX, FACE_INDEX

Point = tuple[float, float]


@dataclass(frozen=True)
class Style:
    """A look for the avatar: colours (RGB) and which hair and accessories to draw."""

    skin: Color
    """Face, ears and neck."""
    hair: Color
    """Hair; brows use a darker shade of it."""
    iris: Color
    """Iris colour."""
    lips: Color
    """Lip colour."""
    shirt: Color
    """Shirt on the shoulders."""
    background: Color
    """Default background when the avatar gets none."""
    haircut: str = "short"
    """One of "short", "bob", "curls"."""
    glasses: bool = False
    """Draw round glasses."""
    blush: float = 0.22
    """Opacity of the cheek blush at rest, 0..1."""


STYLES: dict[str, Style] = {
    "default": Style(
        skin=(242, 200, 167), hair=(92, 62, 44), iris=(84, 120, 92), lips=(214, 120, 112),
        shirt=(64, 132, 160), background=(226, 236, 242),
    ),
    "bob": Style(
        skin=(198, 142, 104), hair=(38, 30, 34), iris=(88, 58, 40), lips=(176, 92, 88),
        shirt=(222, 120, 94), background=(244, 232, 218), haircut="bob",
    ),
    "curls": Style(
        skin=(140, 94, 66), hair=(34, 26, 24), iris=(60, 40, 30), lips=(140, 74, 70),
        shirt=(246, 196, 84), background=(220, 234, 224), haircut="curls", blush=0.16,
    ),
    "glasses": Style(
        skin=(250, 214, 190), hair=(198, 142, 76), iris=(70, 112, 170), lips=(220, 128, 124),
        shirt=(98, 96, 140), background=(236, 230, 244), glasses=True,
    ),
}  # fmt: skip

# Depth (head units towards the viewer) of each layer, for the 2.5-D parallax.
DEPTH = {"back_hair": -0.45, "ears": -0.2, "cheeks": 0.45, "eyes": 0.72, "brows": 0.8, "nose": 1.0, "mouth": 0.85}
EYE_X, EYE_Y = 0.37, 0.03
MOUTH_Y = 0.68
HEAD_CENTRE_Y = 0.44  # head centre, as a fraction of the canvas height
UNIT = 0.24  # one head unit, as a fraction of the canvas height


def _side(face: NDArray[np.float32], stem: str, s: int) -> float:
    """The value of blendshape `stem`+Left (s=+1) or `stem`+Right (s=-1)."""
    return float(face[BLENDSHAPE_INDEX[stem + ("Left" if s > 0 else "Right")]])


def _get(face: NDArray[np.float32], name: str) -> float:
    return float(face[FACE_INDEX[name]])


def _spline(path: skia.Path, pts: Sequence[Point], *, closed: bool = False, move: bool = True) -> None:
    """Append a Catmull-Rom curve through `pts` to `path` as cubic Béziers."""
    n = len(pts)
    if move:
        path.moveTo(*pts[0])
    segments = n if closed else n - 1
    for i in range(segments):
        p0 = pts[(i - 1) % n] if closed else pts[max(i - 1, 0)]
        p1, p2 = pts[i % n], pts[(i + 1) % n]
        p3 = pts[(i + 2) % n] if closed else pts[min(i + 2, n - 1)]
        path.cubicTo(
            p1[0] + (p2[0] - p0[0]) / 6, p1[1] + (p2[1] - p0[1]) / 6,
            p2[0] - (p3[0] - p1[0]) / 6, p2[1] - (p3[1] - p1[1]) / 6,
            p2[0], p2[1],
        )  # fmt: skip
    if closed:
        path.close()


def _paint(color: Color, alpha: float = 1.0, *, stroke: float = 0.0) -> skia.Paint:
    paint = skia.Paint(AntiAlias=True, Color=skia.ColorSetARGB(round(255 * alpha), *color))
    if stroke > 0:
        paint.setStyle(skia.Paint.kStroke_Style)
        paint.setStrokeWidth(stroke)
        paint.setStrokeCap(skia.Paint.kRound_Cap)
        paint.setStrokeJoin(skia.Paint.kRound_Join)
    return paint


def _shade(color: Color, factor: float) -> Color:
    """Darken (factor < 1) or lighten (factor > 1, towards white) a colour."""
    if factor <= 1:
        return (round(color[0] * factor), round(color[1] * factor), round(color[2] * factor))
    t = factor - 1
    return (
        round(color[0] + (255 - color[0]) * t),
        round(color[1] + (255 - color[1]) * t),
        round(color[2] + (255 - color[2]) * t),
    )


class _Paints:
    """Every paint one style needs, built once (no per-frame allocation)."""

    def __init__(self, style: Style) -> None:
        dark = (46, 34, 36)
        self.skin = _paint(style.skin)
        self.skin_shade = _paint(_shade(style.skin, 0.86))
        self.skin_line = _paint(_shade(style.skin, 0.62), stroke=0.035)
        self.crease = _paint(_shade(style.skin, 0.7), stroke=0.025)
        self.hair = _paint(style.hair)
        self.hair_shade = _paint(_shade(style.hair, 0.8))
        self.brow = _paint(_shade(style.hair, 0.75), stroke=0.085)
        self.white = _paint((252, 252, 250))
        self.iris = _paint(style.iris)
        self.pupil = _paint((24, 20, 24))
        self.glint = _paint((255, 255, 255), 0.9)
        self.lash = _paint(dark, stroke=0.032)
        self.lid = _paint(_shade(style.skin, 0.9))
        self.blush = _paint((238, 110, 110), style.blush)
        self.lips = _paint(style.lips)
        self.lip_line = _paint(_shade(style.lips, 0.55), stroke=0.022)
        self.mouth = _paint((92, 34, 44))
        self.teeth = _paint((250, 248, 244))
        self.tongue = _paint((226, 104, 112))
        self.tongue_line = _paint((186, 70, 82), stroke=0.018)
        self.shirt = _paint(style.shirt)
        self.collar = _paint(_shade(style.shirt, 0.8))
        self.frame = _paint((40, 40, 48), stroke=0.045)
        self.lens = _paint((255, 255, 255), 0.16)


class VectorAvatar(Avatar):
    """The flat drawing in one of STYLES, into a reused (height, width) raster (see renderer.avatar.Avatar).

    `background`: anything renderer.avatar.parse_background reads; None: the style's colour. `framing`: where
    the head sits (None: centred, HEAD_CENTRE_Y of the height down, head units of UNIT of the height).
    """

    kind = AvatarKind.VECTOR

    def __init__(
        self,
        style: str = "default",
        *,
        width: int,
        height: int,
        background: Color | str | Path | None = None,
        framing: Framing | None = None,
    ) -> None:
        super().__init__(width=width, height=height)
        if style not in STYLES:
            raise AvatarError(
                f"unknown avatar {style!r}: choose a style ({', '.join(STYLES)}) or give a portrait photo "
                "(.jpg, .png or .webp)"
            )
        self.style = STYLES[style]
        self.framing = framing or Framing()
        self._rgba = np.zeros((self.height, self.width, 4), dtype=np.uint8)  # skia draws straight into it
        self._rgb = np.zeros((self.height, self.width, 3), dtype=np.uint8)  # what draw() returns
        self._surface = skia.Surface(self._rgba, colorType=skia.kRGBA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
        self._canvas = self._surface.getCanvas()
        bg = parse_background(background) or self.style.background
        self._bg_color = skia.ColorSetRGB(*bg) if isinstance(bg, tuple) else None
        self._bg_image = None if isinstance(bg, tuple) else load_background(bg, self.width, self.height)
        self._p = _Paints(self.style)
        self._path = skia.Path()  # reset and refilled for each dynamic shape
        self._path2 = skia.Path()
        self._static = self._static_paths()
        self._pose = (0.0, 0.0)

    # --- the contract -----------------------------------------------------------------------------------

    def _draw(self, face: NDArray[np.float32]) -> NDArray[np.uint8]:
        """Returns the avatar's own RGB buffer, overwritten by the next call."""
        f = np.clip(face, -1.0, 2.0)
        canvas = self._canvas
        if self._bg_image is not None:
            np.copyto(self._rgba, self._bg_image)
        else:
            canvas.clear(self._bg_color)
        canvas.save()
        self._place_figure(canvas, f)
        self._draw_body(canvas, f)
        self._rotate_head(canvas, f)
        self._draw_head(canvas, f)
        canvas.restore()
        # three plane copies are ~5x faster than one strided RGBA -> RGB copy
        for c in range(3):
            self._rgb[..., c] = self._rgba[..., c]
        return self._rgb

    def _release(self) -> None:
        del self._canvas, self._surface  # the skia surface that wraps self._rgba
        self._bg_image = None

    # --- placement ------------------------------------------------------------------------------------

    def _place_figure(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        """Head units → pixels: translation moves the figure, tz (towards the camera) enlarges it."""
        framing = self.framing
        unit = UNIT * self.height * framing.scale * (1.0 + 0.3 * _get(f, "tz"))
        cx = (0.5 + framing.dx) * self.width + _get(f, "tx") * 0.5 * unit
        cy = (HEAD_CENTRE_Y + framing.dy) * self.height - _get(f, "ty") * 0.5 * unit
        canvas.translate(cx, cy)
        canvas.scale(unit, unit)
        self._pose = (_get(f, "pitch"), _get(f, "yaw"))

    def _rotate_head(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        """Roll (+ = counter-clockwise on screen) turns the head about the neck."""
        canvas.translate(0.0, 0.9)
        canvas.rotate(-math.degrees(_get(f, "roll")))
        canvas.translate(0.0, -0.9)

    def _project(self, x: float, y: float, z: float) -> Point:
        """Where a head point (x, y, depth z) lands after pitch and yaw (orthographic)."""
        pitch, yaw = self._pose
        x1 = x * math.cos(yaw) + z * math.sin(yaw)
        z1 = -x * math.sin(yaw) + z * math.cos(yaw)
        y1 = y * math.cos(pitch) - z1 * math.sin(pitch)
        return x1, y1

    def _layer(self, canvas: skia.Canvas, x: float, y: float, z: float) -> None:
        """Move a feature anchored at (x, y, depth z) with the head pose and foreshorten it (after canvas.save)."""
        pitch, yaw = self._pose
        px, py = self._project(x, y, z)
        facing = math.asin(max(-0.9, min(0.9, x / 1.1)))  # how much this part of the head faces sideways
        sx = max(0.15, math.cos(facing + yaw) / math.cos(facing))
        sy = max(0.3, math.cos(pitch))
        canvas.translate(px, py)
        canvas.scale(sx, sy)
        canvas.translate(-x, -y)

    # --- static shapes (built once per avatar) --------------------------------------------------------

    def _static_paths(self) -> dict[str, skia.Path]:
        paths = {"body": skia.Path(), "neck": skia.Path(), "collar": skia.Path()}
        _spline(paths["neck"], [(-0.36, 0.5), (-0.36, 1.55), (0.0, 1.75), (0.36, 1.55), (0.36, 0.5)], closed=True)
        body = [(-2.6, 4.0), (-2.4, 2.1), (-1.5, 1.62), (-0.42, 1.42), (0.42, 1.42), (1.5, 1.62), (2.4, 2.1)]
        _spline(paths["body"], [*body, (2.6, 4.0)], closed=True)
        _spline(paths["collar"], [(-0.46, 1.42), (0.0, 1.86), (0.46, 1.42)], closed=True)
        cut = self.style.haircut
        back, front = skia.Path(), skia.Path()
        if cut == "bob":
            _spline(
                back, [(-1.22, 0.95), (-1.3, -0.4), (-0.8, -1.35), (0, -1.5), (0.8, -1.35), (1.3, -0.4), (1.22, 0.95)]
            )
            back.lineTo(0.0, 0.85)
            back.close()
            fringe = [
                (1.1, 0.45),
                (1.08, -0.6),
                (0.62, -0.58),
                (0.0, -0.56),
                (-0.62, -0.58),
                (-1.08, -0.6),
                (-1.1, 0.45),
            ]
            _spline(front, [(-1.16, 0.45), (-1.14, -0.55), (-0.72, -1.22), (0, -1.38), (0.72, -1.22), (1.14, -0.55)])
            _spline(front, [(1.16, 0.45), *fringe], move=False)
            front.close()
        elif cut == "curls":
            for i in range(13):
                a = math.pi * (0.05 + 0.9 * i / 12)
                back.addCircle(-1.12 * math.cos(a), -0.3 - 1.05 * math.sin(a), 0.36)
            for x in (-0.75, -0.38, 0.0, 0.38, 0.75):
                front.addCircle(x, -0.98 + 0.12 * abs(x), 0.3)
            _spline(front, [(-1.0, -0.4), (-0.8, -1.15), (0, -1.35), (0.8, -1.15), (1.0, -0.4)])
            front.close()
        else:  # short, with a symmetric fringe (the mirror test draws this style)
            _spline(back, [(-1.08, -0.1), (-1.12, -0.9), (0, -1.48), (1.12, -0.9), (1.08, -0.1)])
            back.close()
            edge = [(0.98, -0.2), (0.8, -0.62), (0.42, -0.7), (0.0, -0.62), (-0.42, -0.7), (-0.8, -0.62), (-0.98, -0.2)]
            _spline(front, [(-1.06, -0.02), (-1.1, -0.7), (-0.6, -1.3), (0.0, -1.4), (0.6, -1.3), (1.1, -0.7)])
            _spline(front, [(1.06, -0.02), *edge], move=False)
            front.close()
        paths["back_hair"], paths["front_hair"] = back, front
        return paths

    # --- drawing --------------------------------------------------------------------------------------

    def _draw_body(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        canvas.save()
        canvas.rotate(-math.degrees(0.25 * _get(f, "roll")))  # shoulders follow the head a little
        canvas.drawPath(self._static["body"], self._p.shirt)
        canvas.drawPath(self._static["neck"], self._p.skin_shade)
        canvas.drawPath(self._static["collar"], self._p.collar)
        canvas.restore()

    def _draw_head(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        p = self._p
        canvas.save()
        pitch, yaw = self._pose
        canvas.translate(-0.2 * math.sin(yaw), 0.2 * math.sin(pitch))  # back hair moves against the turn
        canvas.drawPath(self._static["back_hair"], p.hair_shade if self.style.haircut != "curls" else p.hair)
        canvas.restore()
        self._draw_ears(canvas)
        self._head_outline(f)
        canvas.drawPath(self._path, p.skin)
        canvas.save()
        canvas.clipPath(self._path, doAntiAlias=True)  # features turned far to the side stay on the face
        self._draw_cheeks(canvas, f)
        for s in (1, -1):
            self._draw_eye(canvas, f, s)
        self._draw_nose(canvas, f)
        self._draw_mouth(canvas, f)
        canvas.restore()
        canvas.save()
        canvas.translate(0.06 * math.sin(yaw), -0.06 * math.sin(pitch))  # the fringe follows the face
        canvas.drawPath(self._static["front_hair"], p.hair)
        canvas.restore()
        for s in (1, -1):
            self._draw_brow(canvas, f, s)
        if self.style.glasses:
            self._draw_glasses(canvas)

    def _draw_ears(self, canvas: skia.Canvas) -> None:
        for s in (1, -1):
            canvas.save()
            self._layer(canvas, s * 0.93, 0.12, DEPTH["ears"])
            canvas.drawOval(skia.Rect.MakeLTRB(s * 0.93 - 0.16, -0.14, s * 0.93 + 0.16, 0.38), self._p.skin)
            canvas.drawOval(skia.Rect.MakeLTRB(s * 0.96 - 0.07, -0.04, s * 0.96 + 0.07, 0.28), self._p.skin_shade)
            canvas.restore()

    def _head_outline(self, f: NDArray[np.float32]) -> None:
        """The face silhouette into self._path: cheeks puff out, the chin follows the jaw."""
        puff = _get(f, "cheekPuff")
        jaw = _get(f, "jawOpen")
        chin_x = 0.14 * (_get(f, "jawLeft") - _get(f, "jawRight"))
        chin_y = 1.14 + 0.3 * jaw + 0.08 * _get(f, "jawForward")
        upper: list[Point] = [(0.74, -1.02), (0.95, -0.35), (0.94 + 0.1 * puff, 0.3)]
        jaw_l = (0.72 + 0.06 * puff + 0.5 * chin_x, 0.86 + 0.6 * (chin_y - 1.14))
        jaw_r = (-0.72 - 0.06 * puff + 0.5 * chin_x, jaw_l[1])
        chin = self._project(chin_x, chin_y, 0.5)
        chin_l, chin_r = self._project(jaw_l[0], jaw_l[1], 0.2), self._project(jaw_r[0], jaw_r[1], 0.2)
        outline = [(0.0, -1.22), *upper, chin_l, (chin[0] + 0.28, chin[1] - 0.05), chin]
        outline += [(chin[0] - 0.28, chin[1] - 0.05), chin_r, *[(-x, y) for x, y in upper[::-1]]]
        self._path.reset()
        _spline(self._path, outline, closed=True)

    def _draw_cheeks(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        puff = _get(f, "cheekPuff")
        for s in (1, -1):
            squint, smile = _side(f, "cheekSquint", s), _side(f, "mouthSmile", s)
            x, y = s * (0.6 + 0.05 * puff), 0.4 - 0.1 * squint - 0.05 * smile
            canvas.save()
            self._layer(canvas, x, y, DEPTH["cheeks"])
            r = 0.17 * (1 + 0.45 * puff + 0.15 * squint)
            self._p.blush.setAlphaf(min(1.0, self.style.blush * (1 + 1.2 * squint + 1.0 * puff + 0.5 * smile)))
            canvas.drawOval(skia.Rect.MakeLTRB(x - r, y - 0.7 * r, x + r, y + 0.7 * r), self._p.blush)
            if squint > 0.01:  # the raised cheek folds under the eye
                self._p.crease.setAlphaf(min(1.0, squint))
                self._path.reset()
                self._path.moveTo(s * 0.25, y - 0.24)
                self._path.quadTo(s * 0.4, y - 0.2 + 0.02, s * 0.55, y - 0.26)
                canvas.drawPath(self._path, self._p.crease)
            canvas.restore()

    def _eye_lids(self, f: NDArray[np.float32], s: int) -> tuple[float, float]:
        """Heights (head units) of the upper and lower lid control points above/below the eye line."""
        blink, squint, wide = _side(f, "eyeBlink", s), _side(f, "eyeSquint", s), _side(f, "eyeWide", s)
        cheek, down, up = _side(f, "cheekSquint", s), _side(f, "eyeLookDown", s), _side(f, "eyeLookUp", s)
        smile = _side(f, "mouthSmile", s)
        opening = max(0.0, 1.0 - blink)
        upper = 0.3 * (1 + 0.5 * wide - 0.3 * squint - 0.3 * down + 0.12 * up) * opening - 0.07 * blink
        lower = 0.17 * (1 - 0.5 * squint - 0.4 * cheek - 0.15 * smile + 0.25 * wide) * opening
        return upper, max(lower, -upper + 0.004)

    def _draw_eye(self, canvas: skia.Canvas, f: NDArray[np.float32], s: int) -> None:
        p, path = self._p, self._path
        cx, cy = s * EYE_X, EYE_Y
        inner, outer = (cx - s * 0.16, cy), (cx + s * 0.175, cy - 0.02)
        upper, lower = self._eye_lids(f, s)
        canvas.save()
        self._layer(canvas, cx, cy, DEPTH["eyes"])
        path.reset()
        path.moveTo(*inner)
        path.quadTo(cx, cy - upper, *outer)
        path.quadTo(cx, cy + lower, *inner)
        path.close()
        if upper + lower > 0.01:
            canvas.drawPath(path, p.white)
            canvas.save()
            canvas.clipPath(path, doAntiAlias=True)
            gx = s * 0.065 * (_side(f, "eyeLookOut", s) - _side(f, "eyeLookIn", s))
            gy = 0.06 * (_side(f, "eyeLookDown", s) - _side(f, "eyeLookUp", s))
            canvas.drawCircle(cx + gx, cy + gy, 0.1, p.iris)
            canvas.drawCircle(cx + gx, cy + gy, 0.05, p.pupil)
            canvas.drawCircle(cx + gx - s * 0.035, cy + gy - 0.035, 0.022, p.glint)  # symmetric glints
            canvas.restore()
        self._path2.reset()
        self._path2.moveTo(*inner)
        self._path2.quadTo(cx, cy - upper, *outer)
        self._path2.lineTo(outer[0] + s * 0.035, outer[1] - 0.03)  # a small flick at the outer corner
        canvas.drawPath(self._path2, p.lash)
        canvas.restore()

    def _draw_brow(self, canvas: skia.Canvas, f: NDArray[np.float32], s: int) -> None:
        inner_up, outer_up, down = _get(f, "browInnerUp"), _side(f, "browOuterUp", s), _side(f, "browDown", s)
        wide = _side(f, "eyeWide", s)
        base = -0.33 - 0.04 * wide
        pts = [
            (s * (0.16 - 0.04 * down), base + 0.01 - 0.15 * inner_up + 0.1 * down),
            (s * 0.38, base - 0.09 - 0.05 * inner_up - 0.07 * outer_up + 0.07 * down),
            (s * 0.6, base - 0.03 - 0.15 * outer_up + 0.05 * down),
        ]
        canvas.save()
        self._layer(canvas, s * 0.38, base, DEPTH["brows"])
        self._path.reset()
        self._path.moveTo(*pts[0])
        # a quad through the middle point: control = 2*mid - (start+end)/2
        self._path.quadTo(
            2 * pts[1][0] - (pts[0][0] + pts[2][0]) / 2, 2 * pts[1][1] - (pts[0][1] + pts[2][1]) / 2, *pts[2]
        )
        canvas.drawPath(self._path, self._p.brow)
        canvas.restore()

    def _draw_nose(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        p, path = self._p, self._path
        canvas.save()
        self._layer(canvas, 0.0, 0.34, DEPTH["nose"])
        path.reset()
        left, right = _get(f, "noseSneerLeft"), _get(f, "noseSneerRight")
        path.moveTo(-0.1 - 0.03 * right, 0.33 - 0.06 * right)
        path.cubicTo(-0.06, 0.42 - 0.03 * right, 0.06, 0.42 - 0.03 * left, 0.1 + 0.03 * left, 0.33 - 0.06 * left)
        canvas.drawPath(path, p.skin_line)
        for s, sneer in ((1, left), (-1, right)):
            if sneer > 0.01:  # wrinkles beside the bridge
                p.crease.setAlphaf(min(1.0, 1.5 * sneer))
                path.reset()
                path.moveTo(s * 0.08, 0.0)
                path.quadTo(s * 0.15, 0.06, s * 0.13, 0.15)
                canvas.drawPath(path, p.crease)
        canvas.restore()

    def _lip_contours(self, f: NDArray[np.float32]) -> dict[str, list[Point]]:
        """Five-point contours (right corner → left corner) of the lips, in head units around the mouth."""
        jaw, close = _get(f, "jawOpen"), _get(f, "mouthClose")
        pucker, funnel = _get(f, "mouthPucker"), _get(f, "mouthFunnel")
        roll_u, roll_l = _get(f, "mouthRollUpper"), _get(f, "mouthRollLower")
        shrug_u, shrug_l, forward = _get(f, "mouthShrugUpper"), _get(f, "mouthShrugLower"), _get(f, "jawForward")
        shift = 0.1 * (_get(f, "mouthLeft") - _get(f, "mouthRight")) + 0.07 * (_get(f, "jawLeft") - _get(f, "jawRight"))
        drop = 0.3 * jaw * (1 - 0.9 * close)  # how far the lower lip follows the jaw
        y0 = MOUTH_Y - 0.03 * shrug_u
        corners, quarters = {}, {}
        for s in (1, -1):
            smile, frown = _side(f, "mouthSmile", s), _side(f, "mouthFrown", s)
            stretch, dimple, press = _side(f, "mouthStretch", s), _side(f, "mouthDimple", s), _side(f, "mouthPress", s)
            half = 0.25 + 0.08 * smile + 0.09 * stretch + 0.04 * dimple - 0.11 * pucker - 0.08 * funnel + 0.02 * press
            half -= 0.03 * _get(f, "cheekPuff")
            cy = y0 - 0.15 * smile + 0.1 * frown + 0.03 * stretch - 0.02 * dimple + 0.45 * drop
            corners[s] = (shift + s * half, cy)
            up_in = y0 - 0.09 * _side(f, "mouthUpperUp", s) - 0.03 * _side(f, "noseSneer", s) - 0.05 * funnel
            lo_in = y0 + drop + 0.11 * _side(f, "mouthLowerDown", s) + 0.06 * funnel - 0.03 * shrug_l - 0.02 * close
            thick_u = (
                0.06 * (1 - 0.75 * roll_u) * (1 - 0.45 * press) * (1 + 0.7 * pucker + 0.3 * funnel - 0.3 * stretch)
            )
            thick_l = (
                0.08 * (1 - 0.75 * roll_l) * (1 - 0.45 * press) * (1 + 0.7 * pucker + 0.3 * funnel - 0.3 * stretch)
            )
            thick_l *= (1 + 0.35 * shrug_l + 0.5 * forward) * (1 - 0.3 * close)
            quarters[s] = (shift + s * half * 0.55, up_in, max(lo_in, up_in), thick_u, thick_l)
        mid_up = (quarters[1][1] + quarters[-1][1]) / 2
        mid_lo = (quarters[1][2] + quarters[-1][2]) / 2 + 0.04 * funnel + 0.02 * pucker
        mid_tu = (quarters[1][3] + quarters[-1][3]) / 2
        mid_tl = (quarters[1][4] + quarters[-1][4]) / 2
        q = quarters
        return {
            "upper_out": [corners[-1], (q[-1][0], q[-1][1] - q[-1][3] * 1.1), (shift, mid_up - 0.75 * mid_tu),
                          (q[1][0], q[1][1] - q[1][3] * 1.1), corners[1]],
            "upper_in": [corners[-1], (q[-1][0], q[-1][1]), (shift, mid_up), (q[1][0], q[1][1]), corners[1]],
            "lower_in": [corners[-1], (q[-1][0], q[-1][2]), (shift, mid_lo), (q[1][0], q[1][2]), corners[1]],
            "lower_out": [corners[-1], (q[-1][0], q[-1][2] + q[-1][4]), (shift, mid_lo + 1.1 * mid_tl),
                          (q[1][0], q[1][2] + q[1][4]), corners[1]],
        }  # fmt: skip

    def _draw_mouth(self, canvas: skia.Canvas, f: NDArray[np.float32]) -> None:
        p, path, inside = self._p, self._path, self._path2
        c = self._lip_contours(f)
        canvas.save()
        self._layer(canvas, c["upper_in"][2][0], MOUTH_Y, DEPTH["mouth"])
        path.reset()
        _spline(path, c["upper_out"])
        _spline(path, c["lower_out"][::-1], move=False)
        path.close()
        canvas.drawPath(path, p.lips)
        inside.reset()
        _spline(inside, c["upper_in"])
        _spline(inside, c["lower_in"][::-1], move=False)
        inside.close()
        gap = max(b[1] - a[1] for a, b in zip(c["upper_in"], c["lower_in"], strict=True))
        if gap > 0.004:
            canvas.drawPath(inside, p.mouth)
            canvas.save()
            canvas.clipPath(inside, doAntiAlias=True)
            top = min(y for _, y in c["upper_in"])
            left, right = c["upper_in"][0][0], c["upper_in"][-1][0]
            canvas.drawRect(skia.Rect.MakeLTRB(left, top - 0.05, right, top + 0.065), p.teeth)
            bottom = max(y for _, y in c["lower_in"])
            canvas.drawOval(skia.Rect.MakeLTRB(left + 0.08, bottom - 0.07, right - 0.08, bottom + 0.08), p.tongue)
            canvas.restore()
        path.reset()
        _spline(path, c["upper_in"])
        canvas.drawPath(path, p.lip_line)
        self._draw_mouth_marks(canvas, f, c)
        canvas.restore()

    def _draw_mouth_marks(self, canvas: skia.Canvas, f: NDArray[np.float32], c: dict[str, list[Point]]) -> None:
        """Tongue out, dimples and the chin fold under a shrugged lower lip."""
        p, path = self._p, self._path
        tongue = _get(f, "tongueOut")
        if tongue > 0.01:
            mid_x, mid_y = c["upper_in"][2]
            tip = c["lower_out"][2][1] + 0.2 * tongue
            path.reset()
            path.moveTo(mid_x - 0.13, mid_y + 0.01)
            path.cubicTo(mid_x - 0.15, tip + 0.02, mid_x + 0.15, tip + 0.02, mid_x + 0.13, mid_y + 0.01)
            path.close()
            canvas.drawPath(path, p.tongue)
            path.reset()
            path.moveTo(mid_x, mid_y + 0.04)
            path.lineTo(mid_x, tip - 0.06 * tongue)
            canvas.drawPath(path, p.tongue_line)
        for s, corner in ((1, c["upper_in"][-1]), (-1, c["upper_in"][0])):
            dimple = _side(f, "mouthDimple", s) + 0.35 * _side(f, "mouthSmile", s) + 0.5 * _side(f, "mouthPress", s)
            if dimple > 0.01:
                p.crease.setAlphaf(min(1.0, 1.2 * dimple))
                path.reset()
                path.moveTo(corner[0] + s * 0.04, corner[1] - 0.06)
                path.quadTo(corner[0] + s * 0.08, corner[1], corner[0] + s * 0.04, corner[1] + 0.06)
                canvas.drawPath(path, p.crease)
        shrug = _get(f, "mouthShrugLower")
        if shrug > 0.01:
            x, y = c["lower_out"][2]
            p.crease.setAlphaf(min(1.0, 1.2 * shrug))
            path.reset()
            path.moveTo(x - 0.12, y + 0.1)
            path.quadTo(x, y + 0.06, x + 0.12, y + 0.1)
            canvas.drawPath(path, p.crease)

    def _draw_glasses(self, canvas: skia.Canvas) -> None:
        p = self._p
        for s in (1, -1):
            canvas.save()
            self._layer(canvas, s * EYE_X, EYE_Y, DEPTH["eyes"] + 0.15)
            rect = skia.RRect.MakeRectXY(skia.Rect.MakeLTRB(s * EYE_X - 0.25, -0.18, s * EYE_X + 0.25, 0.2), 0.15, 0.15)
            canvas.drawRRect(rect, p.lens)
            canvas.drawRRect(rect, p.frame)
            canvas.drawLine(s * (EYE_X + 0.25), -0.04, s * 1.0, -0.08, p.frame)
            canvas.restore()
        canvas.save()
        self._layer(canvas, 0.0, EYE_Y, DEPTH["nose"])
        self._path.reset()
        self._path.moveTo(-0.13, -0.02)
        self._path.quadTo(0.0, -0.1, 0.13, -0.02)
        canvas.drawPath(self._path, p.frame)
        canvas.restore()
