"""renderer.vector: what only the vector avatar does (styles, mirror symmetry, backgrounds); the contract every
avatar keeps is tests/renderer/test_avatars.py."""

import numpy as np
import pytest

from renderer.avatar import AvatarError
from renderer.face import FACE_INDEX, MIRROR_PAIRS, mirror_face, neutral_face
from renderer.vector import STYLES, VectorAvatar

SIZE = 192


@pytest.fixture(scope="module")
def avatar():
    return VectorAvatar(width=SIZE, height=SIZE)


def with_values(**values):
    face = neutral_face()
    for name, value in values.items():
        face[FACE_INDEX[name]] = value
    return face


def test_every_style_draws_a_face_in_its_own_colours():
    for name, style in STYLES.items():
        image = VectorAvatar(name, width=96, height=64).draw(neutral_face())
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert image.std() > 10  # a face, not a blank frame
        assert tuple(image[0, 0]) == style.background


@pytest.mark.parametrize("style", ["default", "glasses"])
def test_left_right_pairs_mirror_each_other(style):
    avatar = VectorAvatar(style, width=SIZE, height=SIZE)
    rng = np.random.default_rng(1)
    for left, _ in MIRROR_PAIRS:
        face = with_values(**{left: 0.9})
        face[:52] += rng.uniform(0, 0.2, 52).astype(np.float32)  # and some symmetric-breaking background
        face[FACE_INDEX["yaw"]], face[FACE_INDEX["roll"]], face[FACE_INDEX["tx"]] = 0.2, 0.1, 0.3
        image = avatar.draw(face).copy()
        mirrored = avatar.draw(mirror_face(face))[:, ::-1]
        off = np.abs(image.astype(int) - mirrored).max(axis=2) > 40
        assert off.mean() < 0.002, f"{left}: {off.sum()} pixels differ from the mirror image"


def iris_centroids(image, iris=STYLES["default"].iris):
    """(x, y) centroid of iris-coloured pixels in the image's left and right halves."""
    mask = np.abs(image.astype(int) - iris).sum(axis=2) < 30
    ys, xs = np.nonzero(mask)
    half = image.shape[1] / 2
    return [np.array([xs[sel].mean(), ys[sel].mean()]) for sel in (xs < half, xs >= half)]


def test_head_rotation_moves_the_features(avatar):
    rest_left, rest_right = iris_centroids(avatar.draw(neutral_face()))
    left, right = iris_centroids(avatar.draw(with_values(yaw=0.4)))
    assert left[0] > rest_left[0] + 3 and right[0] > rest_right[0] + 3  # turns to the image right
    left, right = iris_centroids(avatar.draw(with_values(pitch=0.3)))
    assert left[1] < rest_left[1] - 3 and right[1] < rest_right[1] - 3  # chin up: features rise
    left, right = iris_centroids(avatar.draw(with_values(roll=0.3)))
    assert right[1] < left[1] - 5  # counter-clockwise: the image-right eye is higher
    left, _ = iris_centroids(avatar.draw(with_values(tx=0.5)))
    assert left[0] > rest_left[0] + 3


def test_draw_reuses_its_buffer(avatar):
    first = avatar.draw(neutral_face())
    second = avatar.draw(with_values(jawOpen=1.0))
    assert first is second


def test_background_colour_and_image(tmp_path):
    corner = VectorAvatar(width=64, height=64, background=(10, 200, 30)).draw(neutral_face())[0, 0]
    assert tuple(corner) == (10, 200, 30)
    assert tuple(VectorAvatar(width=64, height=64, background="#ff0000").draw(neutral_face())[0, 0]) == (255, 0, 0)
    from renderer.sinks import save_png

    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[..., 2] = 250
    save_png(tmp_path / "bg.png", image)
    drawn = VectorAvatar(width=64, height=48, background=str(tmp_path / "bg.png")).draw(neutral_face())
    assert tuple(drawn[0, 0]) == (0, 0, 250)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VectorAvatar(width=64, height=64, background="missing.png")
    with pytest.raises(AvatarError, match="unknown avatar 'nope': choose a style \\(default, bob"):
        VectorAvatar("nope", width=64, height=64)
