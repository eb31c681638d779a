"""How each person of the corpus looks on video: who (a real portrait, or a vector style) and through which camera.

    looks = cast_looks(seed, script, people=4, options=LookOptions(pool="train"), height=256)
    render_look(path, faces, looks[0], size=(256, 256))    # the mp4 that the engine's tracker reads

A look is drawn per clip from the script's random stream, so no two clips look alike:

- who: a portrait of the chosen pool (trainer.synth.portraits), animated by the photo avatar, or, for a share of
  the clips (`vector_share`), one of the vector styles. The people of one script are different people as long as
  the pool has enough of them.
- mirroring: half the clips show the person mirrored (the frame flipped and the face drawn mirrored, so the clip
  still shows the corpus's face: a person's left stays their left).
- framing: the face 0.62-1.3 times the avatar's own size (about 28-60 % of the frame's height) and anywhere that
  keeps the face, and room for its motion, inside the frame, its centre 25-75 % across and 30-62 % down; a large
  face near an edge has the frame cut through its hair, ears or shoulders (the crop).
- colour and light: white balance (warm to cold, a green-magenta tint), exposure, contrast, gamma, saturation, and
  a light from one side (the far side of the frame down to half as bright), from any direction.
- sharpness and compression: half the clips lose resolution (scaled down to 45-100 %, and up again, keeping the
  face at least MIN_SHARP_FACE_PX tall before the upscale), and every clip is H.264 at a crf of 18-36.

Draws do not depend on the pool: the framing, camera and the choice between a portrait and a vector style come
from one stream, the portraits from another, so a corpus rendered again with the unseen pool shows other people
through exactly the same cameras. Without augmentation (`augment=False`) every clip gets the avatar's own
framing, no mirroring, the colours as drawn and crf 20 (the draws are still made, so the people stay the same).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from renderer.avatar import Avatar, Framing, create_avatar
from renderer.face import FPS, mirror_face
from renderer.photo.avatar import FACE_CENTRE_Y, FACE_HEIGHT
from renderer.vector import STYLES
from renderer.video import write_face_video
from trainer.synth.portraits import PORTRAITS, check_pool, pool_names, portrait_photo

POOLS = ("train", "unseen", "none")  # "none": vector styles only
LOOK_STREAM = 1000  # spawn key of the looks' stream under the script's SeedSequence (scripts spawn fewer children)
SCALE = (0.62, 1.3)  # the face's size, times the avatar's own (FACE_HEIGHT of the frame's height)
CENTRE_X, CENTRE_Y = (0.25, 0.75), (0.30, 0.62)  # where the face's centre may go, in fractions of the frame
FACE_ASPECT = 0.8  # a face's width over its height (forehead to chin), for keeping it inside the frame
MOTION = 0.12  # face heights of room kept around the face for head motion
MIN_SHARP_FACE_PX = 64  # px: a clip that loses resolution keeps at least this face height before the upscale
EXPOSURE, CONTRAST, GAMMA = (0.65, 1.25), (0.8, 1.15), (0.8, 1.3)  # brighter than this washes a face out
CRF = (18, 36)
PLAIN_CRF = 20  # Mp4Sink's default


@dataclass(frozen=True)
class LookOptions:
    """Options of `synth --video` that choose the looks."""

    pool: str = "train"
    """Portraits of this pool (trainer.synth.portraits: "train", "unseen"), or "none" for vector styles only."""
    vector_share: float = 0.2
    """Share of the clips drawn with the vector styles instead of a portrait (0-1)."""
    augment: bool = True
    """Draw each clip's camera (mirroring, framing, colour, light, sharpness, compression); False: plain clips."""


@dataclass(frozen=True)
class Camera:
    """The camera and light of one clip, applied to every frame drawn (see the module docstring for the ranges)."""

    mirror: bool = False
    """Flip the frame left to right (with the face drawn mirrored)."""
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Gains of red, green and blue."""
    exposure: float = 1.0
    """Gain of all three channels."""
    contrast: float = 1.0
    """Stretch about mid-grey (after exposure)."""
    gamma: float = 1.0
    """Exponent of the tone curve (above 1 darkens the mid-tones)."""
    saturation: float = 1.0
    """0: grey, 1: as drawn."""
    light: float = 0.0
    """A light from one side: brightness falls from 1 on the lit side of the frame to 1 - light on the other."""
    light_angle: float = 0.0
    """Direction (radians, image axes: 0 is to the right, pi/2 downwards) towards the light."""
    sharpness: float = 1.0
    """The frame is scaled by this and back (1: full resolution)."""
    crf: int = PLAIN_CRF
    """x264's constant rate factor (higher: more compression)."""


@dataclass(frozen=True)
class Look:
    """Who is on a clip and through which camera: `avatar` is "photo:NAME" or "vector:STYLE"."""

    avatar: str
    framing: Framing = field(default_factory=Framing)
    camera: Camera = field(default_factory=Camera)

    def as_dict(self) -> dict[str, Any]:
        """For the manifest: numbers rounded to 4 decimals."""
        return _rounded({"avatar": self.avatar, "framing": asdict(self.framing), "camera": asdict(self.camera)})


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return round(value, 4) if isinstance(value, float) else value


# --- drawing the looks --------------------------------------------------------------------------------------------


def look_rngs(seed: int, script: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(camera stream, portrait stream) of script `script`: children of the script's own SeedSequence."""
    base = np.random.SeedSequence([seed, script], spawn_key=(LOOK_STREAM,))
    camera, who = base.spawn(2)
    return np.random.default_rng(camera), np.random.default_rng(who)


def centre_bounds(scale: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x low, x high), (y low, y high)): where the face's centre may go (fractions of the frame) at `scale`, so
    that the face and room for its motion stay inside the frame, within CENTRE_X and CENTRE_Y."""
    height = FACE_HEIGHT * scale
    half_h, half_w = (0.5 + MOTION) * height, (0.5 * FACE_ASPECT + MOTION) * height
    x = (max(CENTRE_X[0], half_w), min(CENTRE_X[1], 1.0 - half_w))
    y = (max(CENTRE_Y[0], half_h), min(CENTRE_Y[1], 1.0 - half_h))
    return x, y


def sample_framing(rng: np.random.Generator) -> Framing:
    """A face size and a place in the frame that keep the face and room for its motion inside the frame."""
    scale = float(math.exp(rng.uniform(*np.log(SCALE))))
    x_range, y_range = centre_bounds(scale)
    x, y = rng.uniform(*x_range), rng.uniform(*y_range)
    return Framing(scale=scale, dx=float(x - 0.5), dy=float(y - FACE_CENTRE_Y))


def sample_camera(rng: np.random.Generator, face_px: float) -> Camera:
    """A camera and light; `face_px` is the face's height in the frame (px), which bounds the loss of sharpness."""
    warm, tint = rng.uniform(-1.0, 1.0, 2)
    mirror, soft = rng.random(2) < 0.5
    sharpness = float(rng.uniform(max(0.45, min(1.0, MIN_SHARP_FACE_PX / face_px)), 1.0))
    return Camera(
        mirror=bool(mirror),
        white_balance=(float(1 + 0.15 * warm), float(1 + 0.06 * tint), float(1 - 0.15 * warm)),
        exposure=float(math.exp(rng.uniform(*np.log(EXPOSURE)))),
        contrast=float(rng.uniform(*CONTRAST)),
        gamma=float(math.exp(rng.uniform(*np.log(GAMMA)))),
        saturation=float(rng.uniform(0.55, 1.25)),
        light=float(rng.uniform(0.0, 0.5)),
        light_angle=float(rng.uniform(0.0, 2 * math.pi)),
        sharpness=sharpness if soft else 1.0,
        crf=int(rng.integers(CRF[0], CRF[1] + 1)),
    )


def cast_looks(seed: int, script: int, people: int, options: LookOptions, height: int) -> list[Look]:
    """The looks of the `people` clips of one script (the speaker first), drawn as the module docstring says.

    `height` is the videos' height in px."""
    camera_rng, who_rng = look_rngs(seed, script)
    portraits = [f"photo:{name}" for name in pool_names(options.pool)] if options.pool != "none" else []
    styles = [f"vector:{style}" for style in STYLES]
    portrait_order = [portraits[i] for i in who_rng.permutation(len(portraits))] if portraits else []
    style_order = [styles[i] for i in camera_rng.permutation(len(styles))]
    looks = []
    for k in range(people):
        vector = camera_rng.random() < options.vector_share or not portraits
        framing = sample_framing(camera_rng)
        camera = sample_camera(camera_rng, FACE_HEIGHT * framing.scale * height)
        avatar = style_order[k % len(styles)] if vector else portrait_order[k % len(portrait_order)]
        looks.append(Look(avatar, framing, camera) if options.augment else Look(avatar))
    return looks


# --- rendering -------------------------------------------------------------------------------------------------


class CameraFilter:
    """Applies a Camera to (H, W, 3) uint8 frames of one size: mirror, light, tone curve, saturation, sharpness.

    Everything that does not change from frame to frame (the tone curve's table, the light's gradient) is made
    once, so a 256x256 frame costs well under a millisecond."""

    def __init__(self, camera: Camera, width: int, height: int) -> None:
        self.camera = camera
        self._lut = tone_curve(camera)
        self._light = light_gradient(camera, width, height) if camera.light > 0 else None
        small = (max(2, round(width * camera.sharpness)), max(2, round(height * camera.sharpness)))
        self._small = small if camera.sharpness < 1.0 else None
        self._size = (width, height)

    def __call__(self, frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        out = cv2.flip(frame, 1) if self.camera.mirror else frame
        if self._light is not None:
            out = cv2.multiply(out, self._light, dtype=cv2.CV_8U)  # rounds and saturates
        out = cv2.LUT(out, self._lut)
        if self.camera.saturation != 1.0:
            grey = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            out = cv2.addWeighted(out, self.camera.saturation, grey, 1.0 - self.camera.saturation, 0.0)
        if self._small is not None:
            out = cv2.resize(cv2.resize(out, self._small, interpolation=cv2.INTER_AREA), self._size)
        return np.asarray(out, np.uint8)


def tone_curve(camera: Camera) -> NDArray[np.uint8]:
    """(1, 256, 3) uint8: per channel, white balance and exposure, contrast about mid-grey, then gamma."""
    level = np.arange(256, dtype=np.float64)[:, None] / 255.0
    gain = np.asarray(camera.white_balance) * camera.exposure
    value = np.clip(0.5 + camera.contrast * (level * gain - 0.5), 0.0, 1.0) ** camera.gamma
    return np.round(value * 255.0).astype(np.uint8)[None]


def light_gradient(camera: Camera, width: int, height: int) -> NDArray[np.float32]:
    """(H, W, 3) float32 brightness: 1 at the frame's corner or edge towards `light_angle`, falling linearly to
    1 - light at the opposite one."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    along = (xs / max(width - 1, 1) - 0.5) * math.cos(camera.light_angle)
    along += (ys / max(height - 1, 1) - 0.5) * math.sin(camera.light_angle)
    span = max(abs(math.cos(camera.light_angle)) + abs(math.sin(camera.light_angle)), 1e-9)
    gain = 1.0 - camera.light * (0.5 - along / span)  # along / span runs from -1/2 to 1/2
    return np.repeat(gain[..., None], 3, axis=2).astype(np.float32)


def prepare_portraits(pool: str, portraits: Path | None = None) -> None:
    """Check every portrait of `pool` ("none": nothing to do) and make its photo and the photo avatar's cached
    preparation now, once, so that worker processes only read them. PortraitError or PhotoAvatarError (both
    ValueErrors) say which portrait cannot be used and how to fix it."""
    if pool == "none":
        return
    for portrait in check_pool(pool):
        with create_avatar(portrait_photo(portrait.name, portraits), width=64, height=64):
            pass


def portraits_shown(pool: str) -> dict[str, dict[str, str]]:
    """For the manifest: each portrait of `pool` ("none": none) with its package, file, sha256 and who it shows."""
    if pool == "none":
        return {}
    return {
        p.name: {"package": p.source.distribution, "file": p.file, "sha256": p.sha256, "pool": p.pool, "look": p.look}
        for p in (PORTRAITS[name] for name in pool_names(pool))
    }


def make_avatar(look: Look, size: tuple[int, int], portraits: Path | None = None) -> Avatar:
    """The avatar that draws `look` at `size` (width, height); `portraits`: where the portrait photos are made
    (None: trainer.synth.portraits.portraits_dir()). A mirrored look is drawn at the mirrored place, so that the
    camera's flip puts the face where `look.framing` says."""
    kind, _, name = look.avatar.partition(":")
    spec: str | Path = portrait_photo(name, portraits) if kind == "photo" else name
    framing = replace(look.framing, dx=-look.framing.dx) if look.camera.mirror else look.framing
    return create_avatar(spec, width=size[0], height=size[1], framing=framing)


def render_look(
    path: Path, faces: NDArray[np.float32], look: Look, size: tuple[int, int], portraits: Path | None = None
) -> None:
    """Write (T, 58) `faces` as a 25 fps mp4 of `look` at `size`: the person, the camera, the compression."""
    drawn = mirror_face(faces) if look.camera.mirror else faces  # flipped back by the camera: the same face
    with make_avatar(look, size, portraits) as avatar:
        camera = CameraFilter(look.camera, *size)
        write_face_video(path, drawn, fps=float(FPS), avatar=avatar, frame_filter=camera, crf=look.camera.crf)
