"""The photo avatar (issue 12): a user's own portrait animated by the 58 face numbers, on one CPU core.

    from renderer.photo import PhotoAvatar
    with PhotoAvatar(Path("me.jpg"), width=1280, height=720) as avatar:
        rgb = avatar.draw(face)

Modules, bottom-up: portrait (read and check the photo, FaceLandmarker), mesh (the triangle mesh), fields (the 52
blendshapes as displacement fields), rig (expression, gaze and pose per frame), warp (drawing), prepare (the
cached preparation), avatar (PhotoAvatar, the renderer.avatar.Avatar of kind PHOTO).
"""

from renderer.photo.avatar import PhotoAvatar
from renderer.photo.portrait import PhotoAvatarError
from renderer.photo.prepare import PREPARATION_VERSION, default_cache_dir

__all__ = ["PREPARATION_VERSION", "PhotoAvatar", "PhotoAvatarError", "default_cache_dir"]
