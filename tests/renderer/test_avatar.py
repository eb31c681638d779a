"""renderer.avatar: the factory, the registry and the boundary checks of the Avatar base class (what each avatar
draws is tests/renderer/test_avatars.py)."""

from pathlib import Path

import numpy as np
import pytest

from renderer.avatar import (
    AVATARS,
    Avatar,
    AvatarError,
    AvatarKind,
    AvatarUnavailable,
    avatar_class,
    avatar_kind,
    create_avatar,
    parse_background,
)
from renderer.face import neutral_face
from renderer.vector import STYLES, VectorAvatar


@pytest.mark.parametrize(
    ("spec", "kind"),
    [("default", AvatarKind.VECTOR), ("glasses", AvatarKind.VECTOR), ("me.jpg", AvatarKind.PHOTO),
     ("dir/Me.JPEG", AvatarKind.PHOTO), (Path("a.png"), AvatarKind.PHOTO), ("x.webp", AvatarKind.PHOTO)],
)  # fmt: skip
def test_what_the_user_typed_names_its_kind(spec, kind):
    assert avatar_kind(spec) is kind


@pytest.mark.parametrize("spec", ["me.gif", "photos/me", Path("portrait")])
def test_a_path_that_is_no_portrait_is_refused_with_the_formats(spec):
    with pytest.raises(AvatarError, match=r"a portrait must be a \.jpg, \.jpeg, \.png, \.webp file"):
        avatar_kind(spec)


def test_the_factory_makes_each_style_with_its_background():
    with create_avatar("bob", width=64, height=48) as avatar:
        assert isinstance(avatar, VectorAvatar) and avatar.kind is AvatarKind.VECTOR
        assert tuple(avatar.draw(neutral_face())[0, 0]) == STYLES["bob"].background
    with create_avatar("curls", width=64, height=48, background="#102030") as avatar:
        assert tuple(avatar.draw(neutral_face())[0, 0]) == (16, 32, 48)


def test_an_unknown_style_or_a_missing_photo_says_what_to_give(tmp_path):
    with pytest.raises(AvatarError, match="unknown avatar 'nope': choose a style \\(default, bob, curls, glasses\\)"):
        create_avatar("nope", width=64, height=64)
    with pytest.raises(FileNotFoundError, match=r"avatar photo .*missing\.jpg does not exist; give a \.jpg"):
        create_avatar(tmp_path / "missing.jpg", width=64, height=64)


def test_every_kind_is_registered_by_import_path():
    assert set(AVATARS) == set(AvatarKind)
    assert avatar_class(AvatarKind.VECTOR) is VectorAvatar


def test_a_kind_whose_module_is_missing_is_unavailable_not_a_traceback(monkeypatch, tmp_path):
    (tmp_path / "me.jpg").write_bytes(b"")
    monkeypatch.setitem(AVATARS, AvatarKind.PHOTO, "renderer.no_such_avatar:Nothing")
    with pytest.raises(AvatarUnavailable, match=r"photo avatar is not available .*renderer\.no_such_avatar"):
        create_avatar(tmp_path / "me.jpg", width=64, height=64)
    monkeypatch.setitem(AVATARS, AvatarKind.PHOTO, "renderer.face:Nothing")  # a module without the class
    with pytest.raises(AvatarUnavailable, match=r"photo avatar is not available: renderer\.face has no Nothing"):
        create_avatar(tmp_path / "me.jpg", width=64, height=64)


class Broken(Avatar):
    """An implementation that breaks the contract: returns the wrong frame."""

    kind = AvatarKind.VECTOR

    def _draw(self, face):
        return np.zeros((self.height, self.width), np.uint8)

    def _release(self):
        self.released = getattr(self, "released", 0) + 1


def test_the_base_class_checks_what_an_implementation_returns_and_releases_once():
    avatar = Broken(width=32, height=16)
    with pytest.raises(TypeError, match=r"_draw returned uint8 \(16, 32\), not uint8 \(16, 32, 3\)"):
        avatar.draw(neutral_face())
    avatar.close()
    avatar.close()
    assert avatar.released == 1


def test_an_implementation_must_draw_and_release():
    class Incomplete(Avatar):
        kind = AvatarKind.VECTOR

        def _draw(self, face):
            return np.zeros((self.height, self.width, 3), np.uint8)

    with pytest.raises(TypeError, match=r"abstract method .?_release"):
        Incomplete(width=32, height=32)  # type: ignore[abstract]


def test_parse_background_reads_every_form_the_commands_accept(tmp_path):
    """The one --background parser of python -m renderer and reactdiff-engine."""
    assert parse_background("230,236,242") == (230, 236, 242) == parse_background((230, 236, 242))
    assert parse_background("#0a0B0c") == (10, 11, 12)
    assert parse_background(None) is None  # the avatar's own background
    (tmp_path / "junk.png").write_text("not an image")
    for text, error, phrase in [("1,2,x", ValueError, "R,G,B integers"), ("0,0,256", ValueError, "0..255"),
                                ("#12345z", ValueError, "hex digits"), ("missing.png", FileNotFoundError, "does not"),
                                (str(tmp_path / "junk.png"), ValueError, "cannot decode")]:  # fmt: skip
        with pytest.raises(error, match=phrase):
            parse_background(text)
