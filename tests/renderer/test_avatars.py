"""The contract every registered avatar keeps (renderer.avatar.Avatar): one test class, run for each kind in AVATARS.

Features are found without knowing how an avatar draws them: a feature is where the picture changes when its
blendshape is applied (the eyes: eyeBlinkLeft/Right; the mouth: jawOpen), so the pose tests hold for a
drawing and for a photo alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from renderer.avatar import AVATARS, Avatar, AvatarError, AvatarKind, Framing, create_avatar
from renderer.face import BLENDSHAPE_NAMES, FACE_INDEX, FaceValueError, neutral_face
from renderer.sinks import save_png

WIDTH, HEIGHT = 256, 192  # 4:3, as a room
CHANGED = 24  # a pixel "changes" when a channel moves by more than this (of 255)


def astronaut(folder: Path) -> Path:
    """scikit-image's astronaut portrait (public domain), as a PNG file."""
    from skimage import data

    path = folder / "astronaut.png"
    save_png(path, data.astronaut())
    return path


EXAMPLES: dict[AvatarKind, Callable[[Path], str | Path]] = {
    AvatarKind.VECTOR: lambda folder: "default",
    AvatarKind.PHOTO: astronaut,
}
"""What a user would type for --avatar, per kind (made in a folder of the test's own)."""


def test_every_registered_kind_has_an_example():
    assert set(EXAMPLES) == set(AVATARS) == set(AvatarKind)


@pytest.fixture(scope="module", params=list(AVATARS), ids=lambda kind: kind.value)
def spec(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str | Path:
    kind: AvatarKind = request.param
    return EXAMPLES[kind](tmp_path_factory.mktemp(kind.value))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("avatar-cache")


def make(spec: str | Path, cache_dir: Path, width: int = WIDTH, height: int = HEIGHT) -> Avatar:
    return create_avatar(spec, width=width, height=height, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def avatar(spec: str | Path, cache_dir: Path) -> Iterator[Avatar]:
    with make(spec, cache_dir) as avatar:
        yield avatar


def face_with(**values: float) -> NDArray[np.float32]:
    face = neutral_face()
    for name, value in values.items():
        face[FACE_INDEX[name]] = value
    return face


def changed(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """(H, W) pixels where any channel differs by more than CHANGED."""
    return np.abs(a.astype(np.int16) - b).max(axis=2) > CHANGED


def locate(avatar: Avatar, feature: str, **pose: float) -> NDArray[np.float64]:
    """(x, y) pixel centroid of what `feature` = 1 changes on the face with `pose` (or AssertionError: nothing)."""
    base = avatar.draw(face_with(**pose)).copy()
    ys, xs = np.nonzero(changed(avatar.draw(face_with(**pose, **{feature: 1.0})), base))
    assert len(xs) >= 12, f"{feature} changes only {len(xs)} pixels at {pose}"
    return np.array([xs.mean(), ys.mean()])


def eyes(avatar: Avatar, **pose: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(subject's left eye, subject's right eye) centroids; the left one is on the image's right."""
    return locate(avatar, "eyeBlinkLeft", **pose), locate(avatar, "eyeBlinkRight", **pose)


class TestAvatarContract:
    """renderer.avatar.Avatar's promises, for each registered avatar (fixture `avatar`, WIDTH x HEIGHT)."""

    def test_frames_are_rgb_uint8_of_the_avatars_size(self, avatar: Avatar):
        frame = avatar.draw(neutral_face())
        assert (avatar.width, avatar.height) == (WIDTH, HEIGHT)
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        assert frame.std() > 10  # a picture, not a blank frame
        assert np.array_equal(avatar.draw(neutral_face().astype(np.float64)), frame)  # any float dtype

    def test_the_neutral_frame_is_stable(self, avatar: Avatar):
        """Neutral after other expressions is the neutral of before; a 1e-3 nudge of every value barely shows."""
        neutral = avatar.draw(neutral_face()).copy()
        for name in ("jawOpen", "eyeBlinkLeft", "mouthSmileRight", "yaw", "tz"):
            avatar.draw(face_with(**{name: 0.8}))
        assert np.array_equal(avatar.draw(neutral_face()), neutral)
        nudged = neutral_face() + np.random.default_rng(0).choice([-1e-3, 1e-3], 58).astype(np.float32)
        nudged[:52] = np.abs(nudged[:52])
        assert changed(avatar.draw(nudged), neutral).mean() < 0.002

    def test_the_same_input_gives_the_same_frame(self, avatar: Avatar, spec: str | Path, cache_dir: Path):
        rng = np.random.default_rng(7)
        face = neutral_face()
        face[:52] = rng.uniform(0.0, 0.6, 52)
        face[52:] = rng.uniform(-0.2, 0.2, 6)
        first = avatar.draw(face).copy()
        avatar.draw(face_with(jawOpen=1.0, roll=0.3))
        assert np.array_equal(avatar.draw(face), first)
        with make(spec, cache_dir) as another:  # a second avatar from the same input (a photo: from its cache)
            assert np.array_equal(another.draw(face), first)

    @pytest.mark.parametrize("name", BLENDSHAPE_NAMES)
    def test_every_blendshape_changes_pixels(self, avatar: Avatar, name: str):
        neutral = avatar.draw(neutral_face()).copy()
        moved = changed(avatar.draw(face_with(**{name: 1.0})), neutral).sum()
        assert moved >= 12, f"{name} = 1 changes only {moved} pixels"

    def test_left_blendshapes_act_on_the_image_right_and_the_eyes_are_above_the_mouth(self, avatar: Avatar):
        left, right = eyes(avatar)
        mouth = locate(avatar, "jawOpen")
        assert left[0] > right[0] + 0.05 * WIDTH
        assert max(left[1], right[1]) < mouth[1] - 0.05 * HEIGHT
        assert right[0] < mouth[0] < left[0]

    @pytest.mark.parametrize(
        ("pose", "moves"),
        [
            ({"yaw": 0.3}, "right"), ({"yaw": -0.3}, "left"), ({"pitch": 0.3}, "up"), ({"pitch": -0.3}, "down"),
            ({"tx": 0.5}, "right"), ({"tx": -0.5}, "left"), ({"ty": 0.5}, "up"), ({"ty": -0.5}, "down"),
        ],
    )  # fmt: skip
    def test_pose_moves_the_head_in_the_documented_direction(self, avatar: Avatar, pose: dict[str, float], moves: str):
        """renderer.face: yaw + turns the face to the image's right, pitch + lifts the chin (the eyes rise),
        tx + moves right, ty + up."""
        rest, posed = np.mean(eyes(avatar), axis=0), np.mean(eyes(avatar, **pose), axis=0)
        dx, dy = posed - rest
        step = 0.02 * HEIGHT  # about 4 px here
        expected = {"right": dx > step, "left": dx < -step, "up": dy < -step, "down": dy > step}
        assert expected[moves], f"{pose}: the eyes moved by ({dx:.1f}, {dy:.1f}) px, expected {moves}"

    def test_roll_tilts_counter_clockwise_and_tz_enlarges(self, avatar: Avatar):
        left, right = eyes(avatar, roll=0.3)  # counter-clockwise: the image-right eye rises
        assert left[1] < right[1] - 0.03 * HEIGHT
        left, right = eyes(avatar, roll=-0.3)
        assert right[1] < left[1] - 0.03 * HEIGHT
        rest = np.linalg.norm(np.subtract(*eyes(avatar)))
        assert np.linalg.norm(np.subtract(*eyes(avatar, tz=0.5))) > 1.05 * rest
        assert np.linalg.norm(np.subtract(*eyes(avatar, tz=-0.5))) < 0.95 * rest

    @pytest.mark.parametrize("size", [(320, 180), (160, 120)], ids=["16:9", "4:3"])
    def test_the_face_is_framed_at_16_9_and_4_3(self, spec: str | Path, cache_dir: Path, size: tuple[int, int]):
        width, height = size
        with make(spec, cache_dir, width, height) as avatar:
            left, right = eyes(avatar)
            mouth = locate(avatar, "jawOpen")
        assert abs((left[0] + right[0]) / 2 - width / 2) < 0.1 * width  # centred
        assert 0.15 * height < min(left[1], right[1]) and mouth[1] < 0.9 * height  # the face is inside the frame
        assert 0.08 * height < left[0] - right[0] < 0.45 * height  # neither a speck nor a close-up

    def test_a_framing_moves_and_scales_the_face(self, spec: str | Path, cache_dir: Path):
        """Framing(scale, dx, dy): the face's centre moves by (dx, dy) of the frame, its size scales."""
        framing = Framing(scale=0.7, dx=0.15, dy=-0.1)
        with create_avatar(spec, width=WIDTH, height=HEIGHT, cache_dir=cache_dir, framing=framing) as framed:
            moved = eyes(framed)
        with make(spec, cache_dir) as plain:
            rest = eyes(plain)
        shift = np.mean(moved, axis=0) - np.mean(rest, axis=0)
        assert abs(shift[0] - 0.15 * WIDTH) < 0.02 * WIDTH
        assert abs(shift[1] + 0.1 * HEIGHT) < 0.05 * HEIGHT  # the eyes sit above the centre the face scales about
        ratio = np.linalg.norm(np.subtract(*moved)) / np.linalg.norm(np.subtract(*rest))
        assert ratio == pytest.approx(0.7, abs=0.06)

    @pytest.mark.parametrize(
        ("face", "phrase"),
        [
            (np.zeros(57, np.float32), r"shape \(58,\), got shape \(57,\)"),
            (np.zeros((1, 58), np.float32), r"got shape \(1, 58\)"),
            (np.zeros((2, 58), np.float32), r"got shape \(2, 58\)"),
            (np.zeros(58, np.int64), "expected a float array, got dtype int64"),
            (np.full(58, np.nan, np.float32), "value 0 is NaN or inf"),
        ],
        ids=["57 values", "(1, 58)", "(2, 58)", "int", "NaN"],
    )
    def test_bad_faces_are_refused_with_what_is_wrong(self, avatar: Avatar, face: NDArray, phrase: str):
        with pytest.raises(FaceValueError, match=phrase):
            avatar.draw(face)

    @pytest.mark.parametrize("size", [(8, 64), (64, 5000), (64.5, 64)])
    def test_bad_sizes_are_refused(self, spec: str | Path, cache_dir: Path, size: tuple[float, float]):
        with pytest.raises(AvatarError, match="width and height must be whole numbers from 16 to 4096"):
            make(spec, cache_dir, *size)  # type: ignore[arg-type]

    def test_close_is_safe_twice_and_draw_after_close_fails(self, spec: str | Path, cache_dir: Path):
        with make(spec, cache_dir, 64, 48) as avatar:
            avatar.draw(neutral_face())
        avatar.close()  # the second close (the with block made the first)
        with pytest.raises(RuntimeError, match="after close"):
            avatar.draw(neutral_face())


@pytest.mark.parametrize(
    ("values", "phrase"),
    [({"scale": 0.0}, "framing scale 0.0"), ({"scale": float("nan")}, "framing scale nan"), ({"dx": 1.5}, "shift")],
)
def test_impossible_framings_are_refused(values: dict[str, float], phrase: str):
    with pytest.raises(AvatarError, match=phrase):
        Framing(**values)
