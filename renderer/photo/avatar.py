"""The photo avatar: the user's own portrait, animated by all 58 face numbers.

    with PhotoAvatar(Path("me.jpg"), width=1280, height=720) as avatar:
        rgb = avatar.draw(face)  # (720, 1280, 3) uint8, a buffer the next draw() overwrites

Construction does the slow work once: the photo is read and checked, its preparation (landmarks, expression,
mesh, colours) comes from the cache or is made and cached (renderer.photo.prepare), the portrait is framed at
the output size (the face centred, its height FACE_HEIGHT of the frame; where the photo does not reach, its own
edges mirrored and blurred, or the `background` given), and the rig's fields are laid out in output pixels.
A draw paints each closing upper lid into a copy of the framed portrait (renderer.photo.lids), moves the mesh
(renderer.photo.rig), warps that copy by it and paints the mouth's interior into the opening between the lips
(renderer.photo.warp).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from renderer.avatar import Avatar, AvatarKind, Color, Framing, load_background
from renderer.face import FACE_INDEX
from renderer.photo.lids import LidPainter
from renderer.photo.mesh import LIPS_INNER_LOWER, LIPS_INNER_UPPER, LIPS_OUTER_LOWER, Mesh
from renderer.photo.portrait import read_photo
from renderer.photo.prepare import Preparation, default_cache_dir, prepare
from renderer.photo.rig import Rig
from renderer.photo.warp import Mouth, MouthPainter, Warper

FACE_HEIGHT = 0.46  # the face (forehead to chin) spans this fraction of the frame's height...
FACE_WIDTH = 0.6  # ... or this fraction of its width, whichever is smaller
FACE_CENTRE_Y = 0.47  # the face's centre, as a fraction of the frame's height
TOOTH = 0.075  # tooth height in face units (eye distances)
TEETH_HIDDEN = 0.5  # lips pursed to this fraction of their width hide the teeth...
TEETH_RAMP = 0.25  # ... which show fully from this much wider
OPEN_RAMP = 0.03  # face units: the interior fades in while the lips part this much more than in the photo
_INNER = (*LIPS_INNER_UPPER, *LIPS_INNER_LOWER[-2:0:-1])  # the opening, clockwise from the right corner


def place_photo(
    prepared: Preparation, width: int, height: int, place: Framing | None = None
) -> tuple[float, NDArray[np.int64]]:
    """(scale, (x, y) offset in whole px) placing the photo in a width x height frame: photo px -> output px.

    `place` moves and scales the face from where this module frames it (centred, FACE_HEIGHT of the height)."""
    place = place or Framing()
    face = prepared.landmarks[:468, :2]
    low, high = face.min(axis=0), face.max(axis=0)
    fit = min(FACE_HEIGHT * height / (high[1] - low[1]), FACE_WIDTH * width / (high[0] - low[0]))
    scale = fit * place.scale
    centre = (low + high) / 2 * scale
    target = ((0.5 + place.dx) * width, (FACE_CENTRE_Y + place.dy) * height)
    return float(scale), np.round([target[0] - centre[0], target[1] - centre[1]]).astype(np.int64)


def stage(
    rgb: NDArray[np.uint8],
    scale: float,
    offset: NDArray[np.int64],
    size: tuple[int, int],
    background: Color | Path | None,
) -> NDArray[np.uint8]:
    """(H, W, 3) uint8: the photo scaled by `scale` at `offset`; outside it, the photo's edges mirrored and
    blurred (or `background`: a colour, or an image cover-scaled), blended in over a few pixels."""
    width, height = size
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=interpolation)
    h, w = scaled.shape[:2]
    ox, oy = int(offset[0]), int(offset[1])
    top, bottom, left, right = max(oy, 0), max(height - oy - h, 0), max(ox, 0), max(width - ox - w, 0)
    padded = cv2.copyMakeBorder(scaled, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    top, left = top - oy, left - ox
    out: NDArray[np.uint8] = np.ascontiguousarray(padded[top : top + height, left : left + width])
    inside = np.zeros((height, width), np.float32)
    inside[max(oy, 0) : oy + h, max(ox, 0) : ox + w] = 1.0
    if inside.all() and background is None:
        return out
    if background is None:
        fill = cv2.GaussianBlur(out, (0, 0), 0.03 * height + 1)
    elif isinstance(background, Path):
        fill = load_background(background, width, height)[..., :3]
    else:
        fill = np.empty_like(out)
        fill[:] = background
    blend = cv2.GaussianBlur(inside, (0, 0), 0.006 * height + 1)[..., None] * inside[..., None]
    return np.round(out * blend + fill * (1.0 - blend)).astype(np.uint8)


class PhotoAvatar(Avatar):
    """A portrait photo (JPEG, PNG or WebP) animated as a textured 3-D mesh; see the module docstring.

    `background`: None keeps the photo's own background (and extends it where the photo does not reach);
    a colour or an image file fills only what lies outside the photo. `cache_dir`: where preparations are
    cached (default: `renderer.photo.prepare.default_cache_dir()`). `framing`: where the face sits (None: see
    `place_photo`). Bad photos raise PhotoAvatarError.
    """

    kind = AvatarKind.PHOTO

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        background: Color | Path | None = None,
        cache_dir: Path | None = None,
        framing: Framing | None = None,
    ) -> None:
        super().__init__(width=width, height=height)
        photo = read_photo(Path(path))
        prepared = prepare(photo, str(path), Path(cache_dir) if cache_dir is not None else default_cache_dir())
        self.prepared = prepared
        self.scale, offset = place_photo(prepared, self.width, self.height, framing)
        size = (self.width, self.height)
        self.stage = stage(photo.rgb, self.scale, offset, size, background)
        landmarks = self._placed_points(prepared.landmarks, offset)
        self.rig = Rig(
            self._placed(prepared.mesh, offset),
            landmarks,
            prepared.scores,
            prepared.lid_reaches,
            size,
            prepared.glasses_tops,
        )
        shut = stage(prepared.shut_photo(photo.rgb), self.scale, offset, size, background)
        self._lids = LidPainter(self.stage, shut, landmarks, self.rig.frame.unit, prepared.lash_colour)
        self._work = self.stage.copy()  # the framed portrait with the lids painted in this frame
        self._warper = Warper(self._work, prepared.triangles)
        self._mouth = MouthPainter(prepared.mouth_colours)
        self._jaw = np.array([FACE_INDEX[n] for n in ("jawOpen", "jawLeft", "jawRight", "jawForward")])
        self._frame = np.empty((self.height, self.width, 3), np.uint8)

    def _placed_points(self, points: NDArray[np.float32], offset: NDArray[np.int64]) -> NDArray[np.float32]:
        """(N, 3) photo px (continuous: pixel centres at .5) -> output px (pixel centres at whole numbers)."""
        out = points * self.scale
        out[:, :2] += offset - 0.5
        return out.astype(np.float32)

    def _placed(self, mesh: Mesh, offset: NDArray[np.int64]) -> Mesh:
        return Mesh(self._placed_points(mesh.vertices, offset), mesh.triangles, mesh.follow)

    def _draw(self, face: NDArray[np.float32]) -> NDArray[np.uint8]:
        self._lids.paint(self._work, self.rig.lid_closures(face))
        expressed = self.rig.expression(face)
        posed = self.rig.posed(expressed, face)
        self._warper.draw(posed[:, :2], self.rig.rest[:, :2], posed[:, 2], self._frame)
        self._mouth.draw(self._frame, self._mouth_state(face, expressed, posed))
        return self._frame

    def _mouth_state(
        self, face: NDArray[np.float32], expressed: NDArray[np.float64], posed: NDArray[np.float64]
    ) -> Mouth:
        """Where the mouth interior goes: the posed opening, teeth on the skull and on the jaw, and how much of
        it shows (the lips parted beyond the photo's own opening)."""
        rig = self.rig
        upper, lower = list(LIPS_INNER_UPPER), list(LIPS_INNER_LOWER)
        ones = np.ones(len(upper))
        jaw = np.tensordot(rig.amounts(face[:52])[self._jaw], rig.fields[self._jaw][:, lower], axes=1)
        rest_gap = (rig.rest[lower, :2] - rig.rest[upper, :2]) @ rig.frame.ey
        gap = (expressed[lower, :2] - expressed[upper, :2]) @ rig.frame.ey
        parted = float((gap - rest_gap)[1:-1].mean()) / rig.frame.unit
        corners = [LIPS_INNER_UPPER[0], LIPS_INNER_UPPER[-1]]
        width, rest_width = (abs(float(np.diff(p[corners, :2] @ rig.frame.ex)[0])) for p in (expressed, rig.rest))
        return Mouth(
            opening=posed[list(_INNER), :2],
            upper_teeth=rig.posed(rig.rest[upper], face, ones)[:, :2],
            lower_teeth=rig.posed(rig.rest[lower] + jaw, face, ones)[:, :2],
            lower_lip=posed[list(LIPS_OUTER_LOWER), :2],
            tooth_px=TOOTH * rig.frame.unit,
            tongue_out=float(np.clip(face[FACE_INDEX["tongueOut"]], 0.0, 1.0)),
            alpha=float(np.clip(parted / OPEN_RAMP, 0.0, 1.0)),
            teeth=float(np.clip((width / rest_width - TEETH_HIDDEN) / TEETH_RAMP, 0.0, 1.0)),
        )

    def _release(self) -> None:
        del self._warper, self._frame, self._work
