"""The avatar contract: what every avatar promises, the registry of avatar kinds, and the one factory.

An avatar turns one 58-float face frame (renderer.face) into one RGB picture of a fixed size. Two kinds exist:
the vector drawing (renderer.vector, a style name such as "glasses") and the user's own portrait
(renderer.photo, a .jpg/.png/.webp path). Everything that shows a face (reactdiff-engine, python -m renderer,
contact sheets) makes its avatar with `create_avatar` from what the user typed for --avatar:

    with create_avatar("glasses", width=640, height=480) as avatar:  # or create_avatar("me.jpg", ...)
        rgb = avatar.draw(face)  # (480, 640, 3) uint8, a buffer the next draw() overwrites

Pose conventions every avatar follows (those of renderer.face): pitch + lifts the chin (the features rise),
yaw + turns the face towards the image's right, roll + tilts the head counter-clockwise in the image, tx + moves
the head right, ty + up, tz + towards the camera (bigger). ``...Left`` blendshapes act on the subject's left,
the image's right (a non-mirrored camera view).
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import numpy as np
import skia
from numpy.typing import ArrayLike, NDArray

from renderer.face import FACE_DIM, FaceValueError
from renderer.sinks import MAX_SIDE, MIN_SIDE

Color = tuple[int, int, int]
Background = Color | Path
"""A parsed background: an RGB colour, or an image file that exists and decodes (see `parse_background`)."""

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class AvatarKind(Enum):
    """The kinds of avatar (keys of `AVATARS`)."""

    VECTOR = "vector"
    """A flat 2-D drawing in one of renderer.vector.STYLES."""
    PHOTO = "photo"
    """A portrait photo animated as a textured 3-D mesh."""


AVATARS: dict[AvatarKind, str] = {
    AvatarKind.VECTOR: "renderer.vector:VectorAvatar",
    AvatarKind.PHOTO: "renderer.photo:PhotoAvatar",
}
"""The registry: each kind's class as "module:name", imported on first use (the photo avatar pulls in MediaPipe)."""


class AvatarError(ValueError):
    """An avatar cannot be made from what was given; the message says what was wrong and how to fix it."""


@dataclass(frozen=True)
class Framing:
    """Where the face sits in the frame, relative to the avatar's own framing (the face centred, about 46 % of
    the frame's height). The default is that framing; the synthetic corpus varies it like webcams do."""

    scale: float = 1.0
    """The face's size as a multiple of the avatar's own (0.5: half as tall)."""
    dx: float = 0.0
    """The face's centre moves right by this fraction of the frame's width."""
    dy: float = 0.0
    """The face's centre moves down by this fraction of the frame's height."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 0.1 <= self.scale <= 4.0):
            raise AvatarError(f"framing scale {self.scale}: use a face size 0.1 to 4 times the avatar's own")
        if not all(math.isfinite(v) and abs(v) <= 1.0 for v in (self.dx, self.dy)):
            raise AvatarError(f"framing shift ({self.dx}, {self.dy}): use fractions of the frame from -1 to 1")


class AvatarUnavailable(AvatarError):
    """The module of an avatar kind cannot be imported in this installation."""


class Avatar(ABC):
    """Draws (58,) faces into (height, width, 3) uint8 RGB frames; one instance per output size and look.

    Implementations call ``super().__init__(width=..., height=...)``, set `kind`, and implement `_draw` (one
    checked face to one frame) and `_release` (free buffers; called once). This class checks the boundary: the
    size when made, the face on every `draw` (shape (58,), a float dtype, finite values) and what `_draw`
    returns. Slow preparation (a photo's landmarks, meshes, caches) happens in the constructor, so that a
    first `draw` is as fast as the others. `draw` after `close` is an error; `close` is safe twice.

    Not thread-safe: one thread draws at a time (an avatar may be made in one thread and used in another).
    """

    kind: ClassVar[AvatarKind]

    def __init__(self, *, width: int, height: int) -> None:
        self._width, self._height = check_size(width, height)
        self._closed = False

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self._width

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self._height

    def draw(self, face: ArrayLike) -> NDArray[np.uint8]:
        """Render one (58,) float face; returns (height, width, 3) uint8 RGB.

        The array may be a buffer owned by the avatar and overwritten by the next call: copy it to keep it.
        Raises FaceValueError (a ValueError) for a face of the wrong shape or dtype, or with NaN/inf values.
        """
        if self._closed:
            raise RuntimeError(f"{type(self).__name__}: draw() after close()")
        frame = self._draw(check_face(face))
        if frame.shape != (self._height, self._width, 3) or frame.dtype != np.uint8:
            raise TypeError(
                f"{type(self).__name__}._draw returned {frame.dtype} {frame.shape}, "
                f"not uint8 {(self._height, self._width, 3)}"
            )
        return frame

    def close(self) -> None:
        """Free what the avatar holds; later draws raise. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Avatar:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def _draw(self, face: NDArray[np.float32]) -> NDArray[np.uint8]:
        """One checked (58,) float32 face (any finite values: clip as the look needs) -> (H, W, 3) uint8."""

    @abstractmethod
    def _release(self) -> None:
        """Free buffers, textures and threads; called once, by the first `close`."""


def check_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) as ints, or AvatarError unless both are whole numbers from 16 to 4096 pixels."""
    if int(width) != width or int(height) != height or not all(MIN_SIDE <= v <= MAX_SIDE for v in (width, height)):
        raise AvatarError(
            f"avatar size {width}x{height}: width and height must be whole numbers from {MIN_SIDE} to {MAX_SIDE} pixels"
        )
    return int(width), int(height)


def check_face(face: ArrayLike) -> NDArray[np.float32]:
    """One face frame as a (58,) float32 array, or FaceValueError saying what is wrong with it."""
    array = np.asarray(face)
    if array.shape != (FACE_DIM,):
        raise FaceValueError(f"avatar face: draw() takes one frame of shape ({FACE_DIM},), got shape {array.shape}")
    if array.dtype.kind != "f":
        raise FaceValueError(f"avatar face: expected a float array, got dtype {array.dtype} (use .astype(np.float32))")
    if not np.isfinite(array).all():
        raise FaceValueError(f"avatar face: value {int(np.argmin(np.isfinite(array)))} is NaN or inf")
    return array.astype(np.float32, copy=False)


# --- the factory --------------------------------------------------------------------------------------------------


def avatar_kind(spec: str | Path) -> AvatarKind:
    """PHOTO for a path ending in .jpg, .jpeg, .png or .webp; VECTOR for a style name. AvatarError for a path
    with another extension (a style name has no dot or slash)."""
    text = str(spec)
    suffix = Path(text).suffix.lower()
    if suffix in PHOTO_SUFFIXES:
        return AvatarKind.PHOTO
    if suffix or "/" in text or "\\" in text or isinstance(spec, Path):
        raise AvatarError(
            f"avatar {text!r}: a portrait must be a {', '.join(PHOTO_SUFFIXES)} file (or give a style name)"
        )
    return AvatarKind.VECTOR


def avatar_class(kind: AvatarKind) -> type[Avatar]:
    """The class registered for `kind` (imported now); AvatarUnavailable if its module cannot be imported."""
    module_name, _, name = AVATARS[kind].partition(":")
    try:
        cls: type[Avatar] = getattr(importlib.import_module(module_name), name)
    except ModuleNotFoundError as err:
        raise AvatarUnavailable(
            f"the {kind.value} avatar is not available in this installation (cannot import {err.name})"
        ) from err
    except AttributeError as err:  # e.g. a package folder without its __init__.py
        raise AvatarUnavailable(f"the {kind.value} avatar is not available: {module_name} has no {name}") from err
    return cls


def create_avatar(
    spec: str | Path,
    *,
    width: int,
    height: int,
    background: Color | str | Path | None = None,
    cache_dir: Path | None = None,
    framing: Framing | None = None,
) -> Avatar:
    """The avatar for what the user typed for --avatar: a vector style name, or a portrait file (jpg, png, webp).

    `background` is anything `parse_background` reads (None: the style's colour, or the photo's own
    background); `cache_dir` is where a photo's preparation is cached (None: the photo avatar's default);
    `framing` where the face sits in the frame (None: the avatar's own framing).
    Raises AvatarError (a ValueError) or FileNotFoundError, with a message that says how to fix the call.
    """
    kind = avatar_kind(spec)
    if kind is AvatarKind.PHOTO and not Path(spec).is_file():
        raise FileNotFoundError(f"avatar photo {spec} does not exist; give a .jpg, .png or .webp portrait")
    parsed = parse_background(background)
    make: Callable[..., Avatar] = avatar_class(kind)  # each kind's own constructor (see AVATARS)
    placed = {} if framing is None else {"framing": framing}  # a kind's own framing needs no argument
    if kind is AvatarKind.PHOTO:
        return make(Path(spec), width=width, height=height, background=parsed, cache_dir=cache_dir, **placed)
    return make(str(spec), width=width, height=height, background=parsed, **placed)


# --- backgrounds --------------------------------------------------------------------------------------------------


def parse_background(background: Color | str | Path | None) -> Background | None:
    """A background: an RGB tuple, "R,G,B", "#rrggbb", None (the avatar's own), or an image file, which must
    exist and decode. The one parser of `--background` (python -m renderer, reactdiff-engine): ValueError or
    FileNotFoundError say what is wrong."""
    if background is None:
        return None
    if isinstance(background, tuple):
        return _rgb(background, str(background))
    text = str(background)
    if isinstance(background, str) and text.count(",") == 2:
        try:
            return _rgb([int(c) for c in text.split(",")], text)
        except ValueError as err:
            raise ValueError(f"background {text!r}: expected R,G,B integers in 0..255") from err
    if isinstance(background, str) and text.startswith("#") and len(text) == 7:
        try:
            return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
        except ValueError as err:
            raise ValueError(f"background {text!r}: expected #rrggbb with hex digits") from err
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"background image {path} does not exist; give an image file, #rrggbb or R,G,B")
    try:
        skia.Image.open(str(path))
    except RuntimeError as err:  # skia's "Failed to decode an image"
        raise ValueError(f"background image {path}: skia cannot decode it; use a PNG or JPEG file") from err
    return path


def _rgb(values: Sequence[int], text: str) -> Color:
    if len(values) != 3 or not all(0 <= int(c) <= 255 for c in values):
        raise ValueError(f"background {text}: expected three integers in 0..255 (R, G, B)")
    return (int(values[0]), int(values[1]), int(values[2]))


def load_background(path: Path, width: int, height: int) -> NDArray[np.uint8]:
    """An image file (checked by `parse_background`) scaled to cover (height, width) and centre-cropped, as
    premultiplied RGBA (H, W, 4) uint8."""
    image = skia.Image.open(str(path))
    out = np.zeros((height, width, 4), dtype=np.uint8)
    surface = skia.Surface(out, colorType=skia.kRGBA_8888_ColorType, alphaType=skia.kPremul_AlphaType)
    canvas = surface.getCanvas()
    scale = max(width / image.width(), height / image.height())
    canvas.translate(width / 2, height / 2)
    canvas.scale(scale, scale)
    canvas.drawImage(image, -image.width() / 2, -image.height() / 2, skia.SamplingOptions(skia.FilterMode.kLinear))
    del canvas, surface
    return out
