"""`ReactDataset`: speaker→listener samples from a corpus in the REACT 2023/2024 layout.

    <root>/{train,val,test}/{Video_files,Audio_files,Emotion,3D_FV_files}/<site>/<session>/<person>/<clip>
    <root>/{train,val,test}.csv                    header ",speaker_path,listener_path", one pair per row
    <root>/neighbour_emotion_{split}.npy           (2M, 2M) appropriateness matrix (optional for train)
    <root>/mean_face.npy                           58 floats subtracted from every 3DMM array (optional)

    ds = ReactDataset("data/react", "val")         # 2M samples: the M pairs, then the same pairs swapped
    sample = ds[0]                                 # Sample: (T, 58) faces, (T, 25) emotions, (T*640,) audio
    appropriate = ds.neighbours()                  # (2M, 2M) bool

Construction only stats files; a sample's files are read, checked and cached on first access.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, TypeVar, cast

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from renderer.face import FPS
from trainer.data.loaders import (
    AUDIO_RATE,
    DatasetError,
    emotion_frames,
    face_frames,
    fit_audio,
    load_audio,
    load_emotion,
    load_face,
    load_mean_face,
    load_video,
)
from trainer.data.tracked import CACHE_DIR, TrackCache, track_videos

SYNTH_MANIFEST = "synth_manifest.json"  # written by `reactdiff-trainer synth` (trainer.synth.corpus.MANIFEST)

logger = logging.getLogger(__name__)

Direction = Literal["forward", "both"]
Role = Literal["speaker", "listener"]
SpeakerFaces = Literal["fitted", "tracked"]
SPEAKER_FACES: tuple[SpeakerFaces, ...] = ("fitted", "tracked")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".ogg")  # tried in this order
MAX_FRAME_MISMATCH = 2  # frames a pair's arrays may differ in length before it is an error
MAX_AUDIO_MISMATCH_S = 0.08  # seconds the audio may differ from the frames' duration
MEAN_FACE_FILE = "mean_face.npy"
_T = TypeVar("_T")


@dataclass(frozen=True)
class ClipFiles:
    """Where one person's clip lives; `audio`/`video` are None when the corpus has none for it."""

    clip_id: str  # "<site>/<session>/<person>/<clip>", relative to the split folder
    face: Path  # 3D_FV_files/<clip_id>.npy
    emotion: Path  # Emotion/<clip_id>.csv
    audio: Path | None  # Audio_files/<clip_id>.wav (or another AUDIO_SUFFIXES)
    video: Path | None  # Video_files/<clip_id>.mp4 or the PNG folder Video_files/<clip_id>/


@dataclass(frozen=True)
class Sample:
    """One speaker→listener sample, all modalities trimmed to T frames at 25 fps."""

    index: int
    speaker_id: str
    listener_id: str
    speaker_face: NDArray[np.float32]  # (T, 58), mean face subtracted
    speaker_emotion: NDArray[np.float32]  # (T, 25)
    speaker_audio: NDArray[np.float32]  # (T * 640,) mono 16 kHz in [-1, 1]
    listener_face: NDArray[np.float32]  # (T, 58)
    listener_emotion: NDArray[np.float32]  # (T, 25)
    speaker_video_path: Path | None
    listener_video_path: Path | None
    speaker_face_found: NDArray[np.bool_] | None = None  # (T,) tracked faces: found in the frame; fitted: None

    @property
    def frames(self) -> int:
        """T, the number of frames."""
        return int(self.speaker_face.shape[0])


@dataclass(frozen=True)
class _Pair:
    row: int  # row in the pairs CSV, 0-based
    speaker: ClipFiles
    listener: ClipFiles


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read a REACT pairs CSV (header `,speaker_path,listener_path`) as (speaker_id, listener_id) rows."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing; a REACT split lists its pairs in <root>/<split>.csv")
    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = [row for row in csv.reader(file) if row]
    header = [name.strip() for name in rows[0]] if rows else []
    if "speaker_path" not in header or "listener_path" not in header:
        raise DatasetError(f"{path}: the header must name columns speaker_path and listener_path, got {header}")
    s, li = header.index("speaker_path"), header.index("listener_path")
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header) or not row[s].strip() or not row[li].strip():
            raise DatasetError(f"{path}: line {line} should hold {len(header)} columns with both paths, got {row}")
        pairs.append((_clip_id(row[s]), _clip_id(row[li])))
    return pairs


def _clip_id(text: str) -> str:
    return PurePosixPath(text.strip().replace("\\", "/")).as_posix()


def locate_clip(split_dir: Path, clip_id: str) -> ClipFiles:
    """Resolve the files of `clip_id` under a split folder (stat only; missing audio/video become None)."""
    audio = next(
        (p for suffix in AUDIO_SUFFIXES if (p := split_dir / "Audio_files" / f"{clip_id}{suffix}").is_file()), None
    )
    mp4, folder = split_dir / "Video_files" / f"{clip_id}.mp4", split_dir / "Video_files" / clip_id
    video = mp4 if mp4.is_file() else folder if folder.is_dir() else None
    return ClipFiles(
        clip_id, split_dir / "3D_FV_files" / f"{clip_id}.npy", split_dir / "Emotion" / f"{clip_id}.csv", audio, video
    )


def missing_files(clip: ClipFiles, split_dir: Path, *, needs_audio: bool) -> list[Path]:
    """The required files of `clip` that do not exist (audio named by its .wav path)."""
    missing = [path for path in (clip.face, clip.emotion) if not path.is_file()]
    if needs_audio and clip.audio is None:
        missing.append(split_dir / "Audio_files" / f"{clip.clip_id}.wav")
    return missing


def aligned_length(lengths: dict[str, int]) -> int:
    """The common length T (the minimum) of a pair's frame arrays; more than 2 frames apart is an error.

    `lengths` maps a description naming each file to its frame count.
    """
    shortest, longest = min(lengths.values()), max(lengths.values())
    if longest - shortest > MAX_FRAME_MISMATCH:
        listed = "; ".join(f"{what}: {n} frames" for what, n in lengths.items())
        raise DatasetError(
            f"frame counts differ by {longest - shortest} (more than {MAX_FRAME_MISMATCH}), so these files do not "
            f"cover the same stretch of time: {listed}"
        )
    return shortest


def check_audio_length(path: Path, samples: int, frames: int) -> None:
    """Error when `samples` of 16 kHz audio last more than 80 ms longer or shorter than `frames` at 25 fps."""
    audio_s, frames_s = samples / AUDIO_RATE, frames / FPS
    if abs(audio_s - frames_s) > MAX_AUDIO_MISMATCH_S:
        raise DatasetError(
            f"{path}: the audio lasts {audio_s:.3f} s but the clip's {frames} frames last {frames_s:.3f} s "
            f"(more than {MAX_AUDIO_MISMATCH_S * 1000:.0f} ms apart)"
        )


class _LruCache:
    """Loaded arrays by key; the least recently used go first once more than `capacity` are held."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, Path], object] = OrderedDict()

    def get(self, key: tuple[str, Path], load: Callable[[], _T]) -> _T:
        if key in self._items:
            self._items.move_to_end(key)
        else:
            self._items[key] = load()
            if self.capacity is not None and len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return cast(_T, self._items[key])


class ReactDataset:
    """Speaker→listener samples of one split of a REACT-layout corpus (see the module docstring).

    `directions="both"` gives 2M samples: sample k < M is pair k as listed, sample M + k the same pair with
    the roles swapped (REACT's evaluation order). `mean_face` overrides `<root>/mean_face.npy`. With
    `strict=False` pairs with missing files are skipped and listed in `skipped` as (path, reason) instead of
    raising. `cache_clips` bounds how many loaded arrays are kept in memory (None: all).

    `speaker_faces="tracked"` replaces the speaker's 3D_FV array by the faces the engine's own tracker finds in
    the speaker's video (`trainer.data.tracked`, cached in `track_cache`, default `<root>/tracked_faces`; call
    `track()` first), so a model learns from what it will be served. Listener targets stay the corpus's arrays.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        directions: Direction = "both",
        mean_face: str | Path | None = None,
        strict: bool = True,
        cache_clips: int | None = None,
        speaker_faces: SpeakerFaces = "fitted",
        track_cache: str | Path | None = None,
        face_model: str | Path | None = None,
    ) -> None:
        if directions not in ("forward", "both"):
            raise ValueError(f"directions must be 'forward' or 'both', got {directions!r}")
        if speaker_faces not in SPEAKER_FACES:
            raise ValueError(f"speaker_faces must be one of {SPEAKER_FACES}, got {speaker_faces!r}")
        self.speaker_faces = speaker_faces
        self.root, self.split, self.directions, self.strict = Path(root), split, directions, strict
        self.split_dir = self.root / split
        if not self.split_dir.is_dir():
            raise DatasetError(f"{self.split_dir}: missing; expected the split folder of a REACT-layout corpus")
        self.pairs_csv = self.root / f"{split}.csv"
        self.mean_face = self._find_mean_face(mean_face)
        self.skipped: list[tuple[Path, str]] = []
        rows = read_pairs(self.pairs_csv)
        self._csv_rows = len(rows)
        self._pairs = self._index_pairs(rows)
        self._cache = _LruCache(cache_clips)
        self._frames: dict[int, int] = {}
        self.tracked: TrackCache | None = None
        self._persona_names: dict[str, str] | None = None
        if speaker_faces == "tracked":
            self.tracked = TrackCache(track_cache or self.root / CACHE_DIR, face_model)

    def _find_mean_face(self, explicit: str | Path | None) -> NDArray[np.float32] | None:
        if explicit is not None:
            if not Path(explicit).is_file():
                raise DatasetError(f"{explicit}: mean face file not found")
            return load_mean_face(explicit)
        default = self.root / MEAN_FACE_FILE
        if default.is_file():
            return load_mean_face(default)
        logger.info("%s: no %s; 3DMM coefficients are used as stored", self.root, MEAN_FACE_FILE)
        return None

    def _index_pairs(self, rows: list[tuple[str, str]]) -> list[_Pair]:
        pairs = []
        for row, (speaker_id, listener_id) in enumerate(rows):
            pair = _Pair(row, locate_clip(self.split_dir, speaker_id), locate_clip(self.split_dir, listener_id))
            missing = missing_files(pair.speaker, self.split_dir, needs_audio=True) + missing_files(
                pair.listener, self.split_dir, needs_audio=self.directions == "both"
            )
            if not missing:
                pairs.append(pair)
            elif self.strict:
                raise DatasetError(f"{missing[0]}: missing (pair {row} of {self.pairs_csv})")
            else:
                self.skipped.extend((path, f"missing (pair {row} of {self.pairs_csv})") for path in missing)
        if self.skipped:
            kept = len(pairs)
            logger.warning(
                "%s: skipped %d of %d pairs (%d missing files, listed in .skipped); first: %s",
                self.pairs_csv, len(rows) - kept, len(rows), len(self.skipped), self.skipped[0][0],
            )  # fmt: skip
        if not pairs:
            raise DatasetError(f"{self.pairs_csv}: no usable pairs (of {len(rows)} listed)")
        return pairs

    # --- indexing -----------------------------------------------------------------------------------

    @property
    def num_pairs(self) -> int:
        """M, the number of pairs in use (after skips)."""
        return len(self._pairs)

    def __len__(self) -> int:
        return self.num_pairs * (2 if self.directions == "both" else 1)

    def clips(self, index: int) -> tuple[ClipFiles, ClipFiles]:
        """(speaker, listener) files of sample `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        pair = self._pairs[index % self.num_pairs]
        return (pair.listener, pair.speaker) if index >= self.num_pairs else (pair.speaker, pair.listener)

    def frames(self, index: int) -> int:
        """T of sample `index`, from file headers and line counts only (no decoding)."""
        if index not in self._frames:
            speaker, listener = self.clips(index)
            counts = [face_frames(speaker.face), emotion_frames(speaker.emotion)]
            counts += [face_frames(listener.face), emotion_frames(listener.emotion)]
            self._frames[index] = min(counts)
        return self._frames[index]

    # --- loading ------------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> Sample:
        """Load sample `index` (cached arrays, fresh copies each call so callers may modify them)."""
        speaker, listener = self.clips(index)
        s_face, s_emotion = self._motion(speaker)
        l_face, l_emotion = self._motion(listener)
        audio_path = speaker.audio
        if audio_path is None:
            raise DatasetError(f"{self.split_dir / 'Audio_files' / speaker.clip_id}.wav: missing")
        audio = self._cache.get(("audio", audio_path), lambda: load_audio(audio_path))
        frames = aligned_length(
            {
                f"speaker face {speaker.face}": len(s_face),
                f"speaker emotion {speaker.emotion}": len(s_emotion),
                f"listener face {listener.face}": len(l_face),
                f"listener emotion {listener.emotion}": len(l_emotion),
            }
        )
        check_audio_length(audio_path, audio.size, frames)
        s_found = None
        if self.tracked is not None:
            s_face, s_found = self._tracked_face(speaker, frames)
        return Sample(
            index=index,
            speaker_id=speaker.clip_id,
            listener_id=listener.clip_id,
            speaker_face=s_face[:frames].copy(),
            speaker_emotion=s_emotion[:frames].copy(),
            speaker_audio=fit_audio(audio, frames).copy(),
            listener_face=l_face[:frames].copy(),
            listener_emotion=l_emotion[:frames].copy(),
            speaker_video_path=speaker.video,
            listener_video_path=listener.video,
            speaker_face_found=None if s_found is None else s_found[:frames].copy(),
        )

    def _tracked_face(self, clip: ClipFiles, frames: int) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        assert self.tracked is not None
        video, tracked = clip.video, self.tracked
        if video is None:
            raise DatasetError(
                f"{self.split_dir / 'Video_files' / clip.clip_id}: no video (.mp4 or PNG folder), so its speaker "
                'face cannot be tracked; use the fitted 3D_FV faces (speaker_faces = "fitted")'
            )
        return self._cache.get((f"tracked {frames}", video), lambda: tracked.frames(video, frames))

    def speaker_videos(self) -> list[Path]:
        """The videos of every clip that is a speaker in some sample (missing videos are an error)."""
        videos = []
        for index in range(len(self)):
            speaker = self.clips(index)[0]
            if speaker.video is None:
                raise DatasetError(
                    f"{self.split_dir / 'Video_files' / speaker.clip_id}: no video (.mp4 or PNG folder) to track; "
                    "tracked speaker faces need the speakers' videos (write the synthetic corpus with --video), or "
                    "train on the corpus's arrays with speaker_faces = \"fitted\" in the config's [train] section"
                )
            videos.append(speaker.video)
        return list(dict.fromkeys(videos))

    def track(
        self, *, workers: int = 1, progress: bool = True, force: bool = False, stop: threading.Event | None = None
    ) -> int:
        """Track the speaker videos not cached yet (all with `force`; speaker_faces="tracked"); returns how many.

        Setting `stop` ends it early with KeyboardInterrupt, keeping every video tracked so far (see track_videos).
        """
        if self.tracked is None:
            raise ValueError('track() needs a dataset made with speaker_faces="tracked"')
        videos = self.speaker_videos()
        return track_videos(videos, self.tracked, workers=workers, progress=progress, force=force, stop=stop)

    def _motion(self, clip: ClipFiles) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        face = self._cache.get(("face", clip.face), lambda: load_face(clip.face, self.mean_face))
        emotion = self._cache.get(("emotion", clip.emotion), lambda: load_emotion(clip.emotion))
        return face, emotion

    def preload(self) -> None:
        """Load and check every sample, with a progress bar (fills the cache).

        With strict=False, pairs whose files fail to load are dropped and added to `skipped`.
        """
        bad_pairs: dict[int, tuple[Path, str]] = {}  # pair position -> (pairs CSV, reason)
        for index in tqdm(range(len(self)), desc=f"loading {self.split}", unit="sample", leave=False):
            if index % self.num_pairs in bad_pairs:
                continue
            try:
                self[index]
            except DatasetError as exc:
                if self.strict:
                    raise
                pair = self._pairs[index % self.num_pairs]
                bad_pairs[index % self.num_pairs] = (self.pairs_csv, f"pair {pair.row}: {exc}")
        if bad_pairs:
            self.skipped.extend(bad_pairs.values())
            self._pairs = [pair for k, pair in enumerate(self._pairs) if k not in bad_pairs]
            self._frames.clear()
            logger.warning(
                "%s: skipped %d pairs whose files failed to load (listed in .skipped)", self.pairs_csv, len(bad_pairs)
            )
            if not self._pairs:
                raise DatasetError(f"{self.pairs_csv}: no usable pairs left; first problem: {self.skipped[0][1]}")

    def video_frames(self, index: int, who: Role = "speaker") -> NDArray[np.uint8]:
        """Decode the `who` video of sample `index` to (T, H, W, 3) RGB uint8.

        A video at most 2 frames shorter than T is padded by repeating its last frame.
        """
        speaker, listener = self.clips(index)
        clip = {"speaker": speaker, "listener": listener}[who]
        if clip.video is None:
            raise DatasetError(
                f"{self.split_dir / 'Video_files' / clip.clip_id}: no video (.mp4 or PNG folder) for this {who}"
            )
        video, frames = load_video(clip.video), self.frames(index)
        if abs(len(video) - frames) > MAX_FRAME_MISMATCH:
            raise DatasetError(f"{clip.video}: {len(video)} video frames, but the sample's arrays hold {frames}")
        if len(video) < frames:
            video = np.concatenate([video, np.repeat(video[-1:], frames - len(video), axis=0)])
        return video[:frames]

    # --- appropriateness ----------------------------------------------------------------------------

    def neighbours(self) -> NDArray[np.bool_]:
        """(len, len) bool: [k, j] is True when listener j's reaction is appropriate for sample k.

        Read from `<root>/neighbour_emotion_<split>.npy`, (2M, 2M) over the pairs CSV's M rows; skipped pairs
        are dropped, and a forward-only dataset gets the top-left block.
        """
        path = self.root / f"neighbour_emotion_{self.split}.npy"
        if not path.is_file():
            raise DatasetError(
                f"{path}: missing; REACT ships neighbour matrices for val and test "
                "(the synth command writes one per split)"
            )
        matrix = np.load(path, allow_pickle=False)
        size = 2 * self._csv_rows
        if matrix.shape != (size, size):
            raise DatasetError(
                f"{path}: shape {matrix.shape}, expected ({size}, {size}) for the {self._csv_rows} pairs of "
                f"{self.pairs_csv} in both directions"
            )
        if matrix.dtype.kind not in "biuf" or not np.isfinite(matrix).all():
            raise DatasetError(f"{path}: expected a finite numeric 0/1 matrix, got dtype {matrix.dtype}")
        rows = np.array([pair.row for pair in self._pairs])
        keep = rows if self.directions == "forward" else np.concatenate([rows, rows + self._csv_rows])
        return matrix[np.ix_(keep, keep)] != 0

    # --- who listens ----------------------------------------------------------------------------------

    def persona(self, index: int) -> str | None:
        """The persona of sample `index`'s listener, where the corpus names one (the synthetic corpus's
        synth_manifest.json names each listener's persona; the original speaker of a reversed sample, and the
        official data, have none)."""
        _, listener = self.clips(index)
        return self._personas().get(listener.clip_id)

    def _personas(self) -> dict[str, str]:
        """listener clip id -> persona, from `<root>/synth_manifest.json` (empty where there is none)."""
        if self._persona_names is None:
            path = self.root / SYNTH_MANIFEST
            self._persona_names = {}
            if path.is_file():
                try:
                    scripts = json.loads(path.read_text())["scripts"]
                    for script, entry in scripts.items():
                        for k, listener in enumerate(entry["listeners"]):
                            self._persona_names[f"Synth/{script}l{k}/Novice_video/1"] = str(listener["name"])
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise DatasetError(f"{path}: cannot read the listeners' personas ({exc!r})") from None
        return self._persona_names
