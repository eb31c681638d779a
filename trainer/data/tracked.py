"""Speaker faces re-extracted from the speaker videos by the engine's own face tracker, cached on disk.

REACT's 3D_FV arrays (and the synthetic corpus's ground-truth faces) are not what the live engine sees: it sees
MediaPipe's estimates of the same 58 numbers. Training on tracked faces removes that train/serve skew.

    cache = TrackCache(root / "tracked_faces")
    track_videos([video1, video2], cache, workers=2)         # decode + track what is not cached yet
    faces, found = cache.frames(video1, frames=750)          # (750, 58) float32, (750,) bool

Videos are decoded by the engine's `FileSource` (mp4 and anything PyAV reads) or read as numbered PNG frames
at 25 fps, tracked by `engine.tracker.FaceTracker` and assigned to 40 ms frames by `faces_per_frame`: the very
code the engine runs live. Entries are named by the video's sha256, the tracker version and the face model's
sha256, so an edited video or a new tracker never reuses a stale entry, and copies of one video (the synthetic
corpus stores its speaker once per session) are tracked once.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from itertools import islice
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.face import FACE_DIM, FPS
from trainer.data.loaders import DatasetError, load_video, png_frame_paths

log = logging.getLogger(__name__)

CACHE_DIR = "tracked_faces"  # default cache folder, under the corpus root
_READ_CHUNK = 1 << 20


def video_digest(video: Path) -> str:
    """sha256 of a video file, or of a PNG folder's frames (names and bytes, in frame order)."""
    digest = hashlib.sha256()
    paths = png_frame_paths(video) if video.is_dir() else [video]
    for path in paths:
        if video.is_dir():
            digest.update(path.name.encode())
        with path.open("rb") as file:
            while chunk := file.read(_READ_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _rgb_frames(video: Path) -> Iterator[tuple[NDArray[np.uint8], float]]:
    """(rgb, media time) of every video frame, decoded as the engine decodes its input."""
    if video.is_dir():  # numbered PNG frames at 25 fps
        for i, rgb in enumerate(load_video(video)):
            yield rgb, i / FPS
        return
    from engine.sources import FileSource, SourceError, VideoFrame

    try:
        source = FileSource(video)
    except SourceError as exc:
        raise DatasetError(str(exc)) from exc
    if not source.has_video:
        source.close()
        raise DatasetError(f"{video}: holds no video stream, so there is no speaker face to track")
    with source:
        try:
            for item in source:
                if isinstance(item, VideoFrame):
                    yield item.rgb, item.t_s
        except SourceError as exc:
            raise DatasetError(str(exc)) from exc


def track_video(video: Path, face_model: Path | None = None) -> dict[str, NDArray]:
    """Track every frame of one video: {"times": (n,) s, "faces": (n, 58), "found": (n,)}."""
    from engine.tracker import FaceTracker

    times, faces, found = [], [], []
    with FaceTracker(face_model) as tracker:
        for rgb, t_s in _rgb_frames(video):
            result = tracker.track(rgb, t_s)
            times.append(t_s)
            faces.append(result.face)
            found.append(result.found)
    if not times:
        raise DatasetError(f"{video}: no video frames decoded")
    return {
        "times": np.asarray(times, np.float64),
        "faces": np.asarray(faces, np.float32).reshape(-1, FACE_DIM),
        "found": np.asarray(found, np.bool_),
    }


class TrackCache:
    """Tracked faces per video, in `folder`, one .npz per (video content, tracker version, face model)."""

    def __init__(self, folder: str | Path, face_model: str | Path | None = None) -> None:
        from engine.tracker import MODEL_SHA256, TRACKER_VERSION, locate_face_model, verify_face_model

        self.folder = Path(folder)
        self.face_model = None if face_model is None else verify_face_model(Path(face_model))
        if self.face_model is None:
            locate_face_model()  # fail now, with the fix, when no tracker model is installed
        self._tag = f"t{TRACKER_VERSION}-{MODEL_SHA256[:12]}"
        self._digests: dict[Path, str] = {}

    def path(self, video: Path) -> Path:
        """Where the entry of `video` lives (whether or not it exists)."""
        video = Path(video)
        if video not in self._digests:
            if not video.exists():
                raise DatasetError(f"{video}: missing; tracked speaker faces need the speaker's video")
            self._digests[video] = video_digest(video)
        return self.folder / f"{self._digests[video]}-{self._tag}.npz"

    def has(self, video: Path) -> bool:
        return self.path(video).is_file()

    def store(self, video: Path, result: dict[str, NDArray]) -> None:
        """Write an entry atomically (a crash never leaves a half-written file behind)."""
        target = self.path(video)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(file, times=result["times"], faces=result["faces"], found=result["found"])
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, video: Path) -> dict[str, NDArray]:
        path = self.path(video)
        if not path.is_file():
            raise DatasetError(
                f"{video}: its speaker faces are not tracked yet (no {path}); run "
                f"`reactdiff-trainer track --data ROOT` (fit and eval also track what is missing)"
            )
        try:
            with np.load(path, allow_pickle=False) as entry:
                result = {key: entry[key] for key in ("times", "faces", "found")}
        except (OSError, ValueError, KeyError) as exc:
            raise DatasetError(f"{path}: unreadable tracked-face entry ({exc}); delete it and track again") from exc
        if result["faces"].shape != (len(result["times"]), FACE_DIM) or not np.isfinite(result["faces"]).all():
            raise DatasetError(f"{path}: malformed tracked-face entry; delete it and track again")
        return result

    def frames(self, video: Path, frames: int) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """The speaker face per 40 ms frame (frames, 58) and whether a face was found (frames,)."""
        from engine.tracker import faces_per_frame

        entry = self.load(video)
        return faces_per_frame(entry["times"], entry["faces"], entry["found"], frames)


def _track_job(job: tuple[Path, Path | None]) -> tuple[Path, dict[str, NDArray]]:
    video, face_model = job
    return video, track_video(video, face_model)


def _ignore_sigint() -> None:  # pool workers: Ctrl-C reaches the whole process group; the parent decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def track_videos(
    videos: Iterable[Path], cache: TrackCache, *, workers: int = 1, progress: bool = True, force: bool = False,
    stop: threading.Event | None = None,
) -> int:  # fmt: skip
    """Track every video not yet in `cache` (all of them with `force`); returns how many were tracked.

    Each video is stored as soon as it is tracked. When `stop` is set, the videos being tracked are finished and
    stored, the rest are left for the next run, and KeyboardInterrupt is raised.
    """
    todo: dict[str, Path] = {}  # one video per distinct content
    for video in videos:
        path = cache.path(video)
        if (force or not path.is_file()) and path.name not in todo:
            todo[path.name] = Path(video)
    if not todo:
        return 0
    jobs: Sequence[tuple[Path, Path | None]] = [(video, cache.face_model) for video in todo.values()]
    stopped = stop.is_set if stop is not None else lambda: False
    with tqdm(total=len(jobs), desc="tracking speaker faces", unit="video", disable=not progress) as bar:
        if workers <= 1 or len(jobs) == 1:
            for job in jobs:
                if stopped():
                    raise KeyboardInterrupt
                cache.store(*_track_job(job))
                bar.update(1)
        else:  # spawn: MediaPipe and torch both hold threads that a fork would copy in a broken state
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_ignore_sigint) as pool:
                queue = iter(jobs)
                # one job per worker in flight (the pool would queue more, past where a stop can cancel them)
                running = {pool.submit(_track_job, job) for job in islice(queue, workers)}
                while running:
                    done, running = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        cache.store(*future.result())
                        bar.update(1)
                    if stopped():
                        for future in running:  # finish and keep what is being tracked
                            cache.store(*future.result())
                        raise KeyboardInterrupt
                    running |= {pool.submit(_track_job, job) for job in islice(queue, len(done))}
    return len(jobs)
