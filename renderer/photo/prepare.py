"""A portrait's preparation, made once and cached: landmarks, the portrait's own expression, the mesh, colours,
how far its lid skin may stretch, its eyes shut.

    prepared = prepare(photo, "me.jpg", cache_dir)   # a Preparation, from the cache when it is there

The cache file is `<cache_dir>/<sha256 of the photo file>-v<PREPARATION_VERSION>.npz`, written to a temporary
file in the same folder and renamed into place, so that a reader never sees half a file. A cache file that
cannot be read is made again (with a warning); a cache folder that cannot be written only costs the time.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from renderer.photo.fields import glasses_top, lid_reach
from renderer.photo.lids import lash_colour, shut_eyes
from renderer.photo.mesh import FACE_OVAL, LIPS_OUTER_LOWER, LIPS_OUTER_UPPER, Mesh, build_mesh
from renderer.photo.portrait import Photo, find_face
from renderer.photo.rig import FaceFrame
from renderer.photo.warp import MouthColours, mouth_colours

log = logging.getLogger(__name__)

PREPARATION_VERSION = 4  # bump when anything stored below changes meaning (old cache files are then ignored)


def default_cache_dir() -> Path:
    """Where preparations are cached by default: $XDG_CACHE_HOME/reactdiff/avatars (~/.cache/reactdiff/avatars)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reactdiff" / "avatars"


@dataclass(frozen=True)
class Preparation:
    """Everything slow about one portrait (photo px; see renderer.photo.portrait.FoundFace for the axes).

    `size` (2,) the photo's (width, height) as prepared; `landmarks` (478, 3); `scores` (52,) its own
    blendshapes (the rest pose); `pose` (3,) its head pose (rad); `vertices` (V, 3), `triangles` (T, 3) and
    `follow` (V,) the mesh; `colours` (3, 3) the mouth interior's cavity, teeth and tongue RGB; `lash` (3,) the
    lashes' RGB; `lid_reach` (2,) how far the skin above the left and right upper lid may stretch when a lid moves
    (face units); `glasses` (2, K) the top of a glasses frame above the left and right upper lid (face units,
    renderer.photo.fields.glasses_top; NaN: none); `shut_box` (4,) x0, y0, x1, y1 and `shut` (y1 - y0,
    x1 - x0, 3) uint8: the photo's pixels there with both eyes shut (renderer.photo.lids.shut_eyes).
    """

    size: NDArray[np.int64]
    landmarks: NDArray[np.float32]
    scores: NDArray[np.float32]
    pose: NDArray[np.float32]
    vertices: NDArray[np.float32]
    triangles: NDArray[np.int32]
    follow: NDArray[np.float32]
    colours: NDArray[np.int64]
    lash: NDArray[np.int64]
    lid_reach: NDArray[np.float64]
    glasses: NDArray[np.float64]
    shut_box: NDArray[np.int64]
    shut: NDArray[np.uint8]

    @property
    def mesh(self) -> Mesh:
        return Mesh(self.vertices, self.triangles, self.follow)

    @property
    def lid_reaches(self) -> dict[str, float]:
        return {"Left": float(self.lid_reach[0]), "Right": float(self.lid_reach[1])}

    @property
    def glasses_tops(self) -> dict[str, NDArray[np.float64]]:
        return {"Left": self.glasses[0], "Right": self.glasses[1]}

    @property
    def lash_colour(self) -> tuple[int, int, int]:
        r, g, b = (int(v) for v in self.lash)
        return r, g, b

    def shut_photo(self, rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The photo `rgb` (the one prepared) with both eyes shut."""
        x0, y0, x1, y1 = (int(v) for v in self.shut_box)
        out = rgb.copy()
        out[y0:y1, x0:x1] = self.shut
        return out

    @property
    def mouth_colours(self) -> MouthColours:
        cavity, teeth, tongue = (tuple(int(v) for v in c) for c in self.colours)
        return MouthColours(cavity, teeth, tongue)  # type: ignore[arg-type]


def cache_path(cache_dir: Path, sha256: str) -> Path:
    """The cache file of the photo whose file has this sha256."""
    return cache_dir / f"{sha256}-v{PREPARATION_VERSION}.npz"


def prepare(photo: Photo, name: str, cache_dir: Path, face_model: Path | None = None) -> Preparation:
    """The photo's preparation: read from `cache_dir` when there, else made (FaceLandmarker) and cached."""
    path = cache_path(cache_dir, photo.sha256)
    cached = _load(path, photo)
    if cached is not None:
        return cached
    found = find_face(photo.rgb, name, face_model)
    mesh = build_mesh(found.landmarks)
    lips = found.landmarks[list(LIPS_OUTER_UPPER) + list(LIPS_OUTER_LOWER[::-1]), :2]
    colours = mouth_colours(photo.rgb, lips, found.landmarks[list(FACE_OVAL), :2])
    gray = np.asarray(cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2GRAY), np.uint8)
    unit = FaceFrame.of(found.landmarks.astype(np.float64)).unit
    reach = lid_reach(gray, found.landmarks, unit)
    glasses = glasses_top(gray, found.landmarks, unit)
    lash = lash_colour(photo.rgb, found.landmarks, unit)
    shut_box, shut = shut_eyes(photo.rgb, found.landmarks, unit, reach)
    prepared = Preparation(
        size=np.array([photo.rgb.shape[1], photo.rgb.shape[0]], np.int64),
        landmarks=found.landmarks,
        scores=found.scores,
        pose=found.pose,
        vertices=mesh.vertices,
        triangles=mesh.triangles,
        follow=mesh.follow,
        colours=np.array([colours.cavity, colours.teeth, colours.tongue], np.int64),
        lash=np.array(lash, np.int64),
        lid_reach=np.array([reach["Left"], reach["Right"]], np.float64),
        glasses=np.stack([glasses["Left"], glasses["Right"]]),
        shut_box=shut_box,
        shut=shut,
    )
    _save(path, prepared)
    return prepared


def _load(path: Path, photo: Photo) -> Preparation | None:
    """The cached preparation at `path`, or None when there is none or it cannot be used (then with a warning)."""
    if not path.is_file():
        return None
    try:
        with path.open("rb") as file, np.load(file, allow_pickle=False) as data:
            prepared = Preparation(**{f.name: data[f.name] for f in fields(Preparation)})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        log.warning("avatar cache %s cannot be read (%s); preparing the photo again", path, err)
        return None
    if tuple(prepared.size) != (photo.rgb.shape[1], photo.rgb.shape[0]) or prepared.landmarks.shape != (478, 3):
        log.warning("avatar cache %s does not match the photo; preparing it again", path)
        return None
    return prepared


def _save(path: Path, prepared: Preparation) -> None:
    """Write `prepared` to `path` atomically (a temporary file in the same folder, then a rename); the
    temporary file is removed whatever happens, so the folder never holds a partial cache file."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **asdict(prepared))
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        log.warning("avatar cache %s cannot be written (%s); the photo will be prepared again next time", path, err)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
