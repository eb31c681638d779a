"""A portrait photo, read and checked, and what FaceLandmarker finds in it: the one slow step of the photo avatar.

    photo = read_photo(Path("me.jpg"))             # Photo: RGB pixels (at most WORK_SIDE px) and the file's sha256
    found = find_face(photo.rgb, "me.jpg")          # FoundFace: 478 landmarks (px), 52 scores, pose

Every problem with the photo is a PhotoAvatarError whose one-line message says how to fix it; a photo that
works but will look worse (several faces, a turned head) gets a logged warning.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import skia
from numpy.typing import NDArray

from renderer.avatar import AvatarError
from renderer.face import NUM_BLENDSHAPES, ROTATION, face_from_mediapipe
from renderer.face_model import locate_face_model, native_log_to_debug

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 200 * 2**20  # a larger file is refused before it is read
MAX_PIXELS = 50_000_000  # a larger image (e.g. 8000 x 8000) is refused before it is decoded
WORK_SIDE = 2048  # px: longer photos are scaled down once; no output size needs more of the face
MIN_FACE_PX = 80  # px: the smallest face (forehead top to chin, after scaling) the avatar animates
WARN_TURN_RAD = 0.35  # a face turned more than this (yaw or pitch) works but head turns will smear
MAX_TURN_RAD = 0.6  # a face turned more than this is refused
SUPPORTED = {
    skia.EncodedImageFormat.kJPEG: "JPEG",
    skia.EncodedImageFormat.kPNG: "PNG",
    skia.EncodedImageFormat.kWEBP: "WebP",
}
FIX_PHOTO = "use a sharp, well-lit photo of one face looking at the camera"


class PhotoAvatarError(AvatarError):
    """The photo cannot be made into an avatar; the message names the photo, the problem and the fix."""


@dataclass(frozen=True)
class Photo:
    """A decoded portrait: `rgb` (H, W, 3) uint8, at most WORK_SIDE px on its longer side; `sha256` of the file."""

    rgb: NDArray[np.uint8]
    sha256: str


@dataclass(frozen=True)
class FoundFace:
    """What FaceLandmarker IMAGE mode finds on the photo's largest face.

    `landmarks` (478, 3) float32 in photo pixels: x right, y down, z towards the camera (MediaPipe's relative
    depth, scaled like x); 468-477 are the irises. `scores` (52,) the portrait's own blendshapes in
    renderer.face order (tongueOut 0). `pose` (3,) pitch, yaw, roll in radians (renderer.face conventions).
    """

    landmarks: NDArray[np.float32]
    scores: NDArray[np.float32]
    pose: NDArray[np.float32]


def read_photo(path: Path) -> Photo:
    """Read and check a JPEG, PNG or WebP portrait; scale it down to WORK_SIDE px if it is larger."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PhotoAvatarError(
                f"photo {path}: the file is {size / 2**20:.0f} MB, more than {MAX_FILE_BYTES // 2**20} MB; "
                f"save a smaller JPEG (2000 px is plenty)"
            )
        data = path.read_bytes()
    except OSError as err:
        raise PhotoAvatarError(f"photo {path}: cannot be read ({err.strerror}); check the path and its rights") from err
    width, height = _checked_header(path, data)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # EXIF orientation applied
    if bgr is None or bgr.ndim != 3:
        raise PhotoAvatarError(f"photo {path}: the {width}x{height} image cannot be decoded (damaged?); re-save it")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    scale = WORK_SIDE / max(rgb.shape[:2])
    if scale < 1:
        log.info("photo %s: scaled from %dx%d by %.3f for preparation", path, width, height, scale)
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return Photo(np.ascontiguousarray(rgb), hashlib.sha256(data).hexdigest())


def _checked_header(path: Path, data: bytes) -> tuple[int, int]:
    """(width, height) from the file's header, before anything is decoded; PhotoAvatarError for other formats."""
    try:
        codec = skia.Codec.MakeFromData(skia.Data.MakeWithoutCopy(data))
    except RuntimeError as err:  # skia's "Failed to make codec"
        raise PhotoAvatarError(f"photo {path}: not an image file; give a JPEG, PNG or WebP portrait") from err
    kind = codec.getEncodedFormat()
    if kind not in SUPPORTED:
        raise PhotoAvatarError(
            f"photo {path}: {str(kind).rsplit('.k', 1)[-1]} images are not supported; convert it to JPEG, PNG or WebP"
        )
    width, height = codec.dimensions().width(), codec.dimensions().height()
    if width * height > MAX_PIXELS:
        raise PhotoAvatarError(
            f"photo {path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, more than "
            f"{MAX_PIXELS / 1e6:.0f}; scale it down (2000 px on the longer side is plenty)"
        )
    return width, height


def find_face(rgb: NDArray[np.uint8], name: str, face_model: Path | None = None) -> FoundFace:
    """Landmarks, scores and pose of the largest face on `rgb`; PhotoAvatarError if none is usable.

    `name` names the photo in messages. Several faces: the largest is taken and a warning says so.
    """
    result = _landmark(rgb, face_model)
    faces = [np.array([(p.x, p.y, p.z) for p in face], np.float64) for face in result.face_landmarks]
    if not faces:
        raise PhotoAvatarError(f"photo {name}: no face found; {FIX_PHOTO}")
    height, width = rgb.shape[:2]
    heights = [float(np.ptp(f[:468, 1]) * height) for f in faces]
    k = int(np.argmax(heights))
    if len(faces) > 1:
        log.warning("photo %s: %d faces found; animating the largest (%.0f px tall)", name, len(faces), heights[k])
    if heights[k] < MIN_FACE_PX:
        raise PhotoAvatarError(
            f"photo {name}: the face is {heights[k]:.0f} px tall (forehead to chin), smaller than the minimum of "
            f"{MIN_FACE_PX} px; use a larger photo or one taken closer"
        )
    face = face_from_mediapipe(result.face_blendshapes[k], result.facial_transformation_matrixes[k])
    pose = face[ROTATION]
    check_turn(pose, name)
    landmarks = faces[k] * (width, height, -width)  # normalised → px; z flipped so + is towards the camera
    return FoundFace(landmarks.astype(np.float32), face[:NUM_BLENDSHAPES].copy(), pose.copy())


def _landmark(rgb: NDArray[np.uint8], face_model: Path | None) -> Any:
    """FaceLandmarker (IMAGE mode, up to 4 faces) on one picture; its raw result."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(locate_face_model(face_model))),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=4,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    with native_log_to_debug():
        landmarker = vision.FaceLandmarker.create_from_options(options)
    try:
        return landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
    finally:
        landmarker.close()


def check_turn(pose: NDArray[np.float32], name: str) -> None:
    """Refuse a face turned more than MAX_TURN_RAD; warn above WARN_TURN_RAD (yaw or pitch)."""
    turn = float(max(abs(pose[0]), abs(pose[1])))
    what = "turned sideways" if abs(pose[1]) >= abs(pose[0]) else "tilted up or down"
    if turn > MAX_TURN_RAD:
        raise PhotoAvatarError(
            f"photo {name}: the face is {what} by {np.degrees(turn):.0f} degrees (at most "
            f"{np.degrees(MAX_TURN_RAD):.0f}); use a photo looking at the camera"
        )
    if turn > WARN_TURN_RAD:
        log.warning(
            "photo %s: the face is %s by %.0f degrees; head turns will smear (a photo looking at the camera is best)",
            name,
            what,
            np.degrees(turn),
        )
