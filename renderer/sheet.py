"""A labelled contact sheet of key expressions, for looking at any avatar at a glance.

with create_avatar("me.jpg", width=256, height=256) as avatar:  # or a style name: "glasses"
    save_png("sheet.png", contact_sheet(avatar))
"""

from __future__ import annotations

import numpy as np
import skia
from numpy.typing import NDArray

from renderer.avatar import Avatar
from renderer.face import FACE_INDEX, neutral_face

KEY_EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "smile": {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8, "cheekSquintLeft": 0.5, "cheekSquintRight": 0.5},
    "surprise": {"jawOpen": 0.6, "browInnerUp": 0.8, "browOuterUpLeft": 0.8, "browOuterUpRight": 0.8,
                 "eyeWideLeft": 0.8, "eyeWideRight": 0.8},
    "blink": {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0},
    "sad": {"mouthFrownLeft": 0.8, "mouthFrownRight": 0.8, "browInnerUp": 0.7, "mouthShrugLower": 0.5},
    "angry": {"browDownLeft": 1.0, "browDownRight": 1.0, "mouthPressLeft": 0.7, "mouthPressRight": 0.7,
              "eyeSquintLeft": 0.5, "eyeSquintRight": 0.5},
    "disgust": {"noseSneerLeft": 0.9, "noseSneerRight": 0.9, "mouthUpperUpLeft": 0.6, "mouthUpperUpRight": 0.6,
                "browDownLeft": 0.5, "browDownRight": 0.5},
    "pucker": {"mouthPucker": 1.0},
    "funnel": {"mouthFunnel": 1.0, "jawOpen": 0.15},
    "tongue out": {"tongueOut": 1.0, "jawOpen": 0.3},
    "cheek puff": {"cheekPuff": 1.0},
    "look left": {"eyeLookOutRight": 0.9, "eyeLookInLeft": 0.9},
    "smirk": {"mouthSmileLeft": 0.8, "mouthLeft": 0.4, "mouthDimpleLeft": 0.6, "browOuterUpRight": 0.5},
    "nod down": {"pitch": -0.35},
    "turn": {"yaw": 0.5},
    "tilt": {"roll": 0.3},
}  # fmt: skip


def expression_face(values: dict[str, float]) -> NDArray[np.float32]:
    """A (58,) neutral face with the named values set."""
    face = neutral_face()
    for name, value in values.items():
        face[FACE_INDEX[name]] = value
    return face


def contact_sheet(avatar: Avatar, *, columns: int = 4) -> NDArray[np.uint8]:
    """(rows*H, columns*W, 3) uint8: every key expression drawn by `avatar` (W x H tiles) with its name below."""
    names = list(KEY_EXPRESSIONS)
    rows, w, h = -(-len(names) // columns), avatar.width, avatar.height
    sheet = np.full((rows * h, columns * w, 4), 255, dtype=np.uint8)
    for k, name in enumerate(names):
        r, c = divmod(k, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w, :3] = avatar.draw(expression_face(KEY_EXPRESSIONS[name]))
    surface = skia.Surface(sheet, colorType=skia.kRGBA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
    canvas = surface.getCanvas()
    tile = min(w, h)  # the labels' scale
    font = skia.Font(skia.Typeface("sans-serif"), tile * 0.075)
    box = skia.Paint(AntiAlias=True, Color=skia.ColorSetARGB(200, 255, 255, 255))
    ink = skia.Paint(AntiAlias=True, Color=skia.ColorSetRGB(30, 30, 40))
    for k, name in enumerate(names):
        r, c = divmod(k, columns)
        x, y = c * w + tile * 0.04, (r + 1) * h - tile * 0.04
        width = font.measureText(name)
        canvas.drawRoundRect(skia.Rect.MakeLTRB(x - 4, y - tile * 0.085, x + width + 4, y + tile * 0.02), 4, 4, box)
        canvas.drawString(name, x, y, font, ink)
    del canvas, surface
    return np.ascontiguousarray(sheet[..., :3])
