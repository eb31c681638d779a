"""A media file (anything PyAV reads: mp4, webm, mkv, wav, mp3, ...) as a speaker source.

    with FileSource("talk.mp4", realtime=True) as source:
        for item in source: ...

Audio and video are decoded together and handed out in media-time order. With `realtime=True` each item is
held back until its media time has passed on the wall clock (audio chunks until their last sample), as if a
live speaker were producing it; otherwise items come as fast as they decode. A gap of more than MAX_GAP_S in
the media timeline (damaged timestamps, or a still stretch of a video-only file; audio leaves none) is not
waited out.

Damaged and hostile files give a SourceError, and the limits below (frame size, audio rate, items held back)
keep the memory they can make the decoder use bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from numpy.typing import NDArray

from engine.features import SAMPLE_RATE
from engine.sources.audio import MonoResampler
from engine.sources.base import AudioChunk, Media, Source, SourceError, SourceKind, VideoFrame, register_source

# A stream that ends this much before the duration its header declares is a truncated file.
TRUNCATION_TOLERANCE_S = 0.25
_ATTACHED_PICTURE = 1024  # AV_DISPOSITION_ATTACHED_PIC: cover art in an audio file, not a video
# Limits that keep a damaged or hostile file's memory bounded. FFmpeg allocates a frame of the size a header
# claims (a 200-byte PNG claiming 16000x16000 took 780 MB), and resampling 1 Hz audio to 16 kHz turns a 12 KB
# file into 400 MB of samples.
MAX_VIDEO_PIXELS = 4096 * 2160  # DCI 4K; larger frames are refused while FFmpeg probes and decodes
AUDIO_RATES_HZ = (4000, 768_000)  # below or above any real recording
MAX_AUDIO_CHANNELS = 64  # a header claiming more is damaged (real layouts stop at 22.2 = 24 channels)
MAX_GAP_S = 1.0  # realtime pacing waits at most this long between items (longer gaps in the timeline are skipped)
MAX_PENDING = 32  # decoded items held back while another stream has nothing queued (~1.3 s of 25 fps video)
_DECODER_LIMITS = {"max_pixels": str(MAX_VIDEO_PIXELS)}
_S = TypeVar("_S", bound=av.stream.Stream)


def open_media(path: Path) -> av.container.InputContainer:
    """`av.open` with the limits every reader of speaker media shares (FileSource, the trainer's loaders).

    Frames larger than MAX_VIDEO_PIXELS fail to probe and decode instead of being allocated; metadata that is
    not UTF-8 is replaced instead of being an error. Raises what `av.open` raises.
    """
    container = av.open(str(path), options=_DECODER_LIMITS, metadata_errors="replace")
    try:
        for stream in decodable(container.streams.video):
            stream.codec_context.options = dict(_DECODER_LIMITS)  # the decoder's own context, opened on first use
    except BaseException:
        container.close()
        raise
    return container


def decodable(streams: Iterable[_S]) -> list[_S]:
    """The streams FFmpeg has a decoder for (one of a codec it does not know has no codec context)."""
    return [stream for stream in streams if stream.codec_context is not None]


def audio_problem(rate: int, channels: int) -> str | None:
    """Why audio at `rate` Hz with `channels` is refused (a damaged header, most likely), or None when it is fine."""
    low, high = AUDIO_RATES_HZ
    if not low <= rate <= high:
        return f"audio at {rate} Hz, outside the {low}-{high} Hz this reads (a damaged header, or resample the file)"
    if channels > MAX_AUDIO_CHANNELS:
        return (
            f"audio with {channels} channels, more than the {MAX_AUDIO_CHANNELS} this reads "
            "(mix it down, e.g. ffmpeg -i IN -ac 2 OUT)"
        )
    return None


def video_size_problem(width: int, height: int) -> str | None:
    """Why video frames of width x height are refused, or None when they are fine (0 x 0: not known yet)."""
    if width * height <= MAX_VIDEO_PIXELS:
        return None
    return (
        f"video frames of {width}x{height} pixels, more than the {MAX_VIDEO_PIXELS:,} this reads "
        "(scale it down, e.g. ffmpeg -i IN -vf scale=1280:-2 OUT)"
    )


@dataclass(frozen=True)
class _Decoded:
    """A decoded item waiting for its turn: audio samples or a video frame, not yet stamped with arrival."""

    t_s: float  # media time of its start
    due_s: float  # media time after which it exists (end of an audio chunk, the frame time of a video frame)
    payload: NDArray[np.float32] | av.VideoFrame


def _pick_streams(container: av.container.InputContainer) -> tuple[av.AudioStream | None, av.VideoStream | None]:
    audios = decodable(container.streams.audio)
    videos = [s for s in decodable(container.streams.video) if not int(s.disposition) & _ATTACHED_PICTURE]
    return (audios[0] if audios else None), (videos[0] if videos else None)


@register_source
class FileSource(Source):
    """Speaker media from a file; `has_audio` / `has_video` say which streams it holds (at least one)."""

    kind = SourceKind.FILE

    def __init__(self, path: str | Path, *, realtime: bool = False) -> None:
        super().__init__()
        self.path = Path(path)
        self.realtime = realtime
        self._container = self._open()
        self._audio, self._video = _pick_streams(self._container)
        problem = self._header_problem()
        if problem:
            self._container.close()
            raise SourceError(f"{self.path}: {problem}")
        self.duration_s = None if self._container.duration is None else self._container.duration / 1e6
        self._t0 = (self._container.start_time or 0) / 1e6  # media time 0, seconds in the file's clock
        self._resampler = MonoResampler(what=str(self.path))
        self._audio_t0: float | None = None  # media time of the first audio sample
        self._queued_samples = 0  # 16 kHz samples decoded so far: the audio clock
        rate = self._video.average_rate if self._video is not None else None
        self._frame_s = 1.0 / float(rate) if rate else 0.04  # one video frame, seconds
        self._reached_s = 0.0  # media time decoded so far (for error messages and the truncation check)
        self.pending_peak = 0  # most decoded items one stream held back at once for media-time order (_release)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._state = "idle"  # → "iterating" → "done"

    def _open(self) -> av.container.InputContainer:
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        try:
            return open_media(self.path)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"{self.path}: cannot open as a media file; is it corrupt or truncated? ({exc})") from exc

    def _header_problem(self) -> str | None:
        if self._audio is None and self._video is None:
            return "the file holds neither an audio nor a video stream that this can decode"
        audio = self._audio.codec_context if self._audio is not None else None
        if audio is not None and audio.sample_rate and (problem := audio_problem(audio.sample_rate, audio.channels)):
            return problem  # a rate of 0 is not in the header: each frame is checked as it decodes
        if self._video is not None:
            return video_size_problem(self._video.codec_context.width, self._video.codec_context.height)
        return None

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    @property
    def has_video(self) -> bool:
        return self._video is not None

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._state == "idle":  # otherwise the iterating thread closes the container as it leaves
                self._state = "done"
                self._container.close()

    def __iter__(self) -> Iterator[Media]:
        with self._lock:
            if self._state != "idle":
                if self._closed.is_set():
                    return
                raise SourceError(f"{self.path}: a FileSource can be iterated only once; open a new one")
            self._state = "iterating"
        try:
            yield from self._paced(self._ordered())
        finally:
            with self._lock:
                self._state = "done"
                self._container.close()

    def _paced(self, decoded: Iterator[_Decoded]) -> Iterator[Media]:
        start, latest_due = time.monotonic(), 0.0  # wall-clock time of media time 0; media time reached
        for item in decoded:
            if item.due_s - latest_due > MAX_GAP_S:  # skip the gap: damaged timestamps made waits of hours
                start -= item.due_s - latest_due - MAX_GAP_S
            latest_due = max(latest_due, item.due_s)
            wait = start + item.due_s - time.monotonic() if self.realtime else 0.0
            if self._closed.wait(wait) if wait > 0 else self._closed.is_set():
                return
            yield self._stamped(item, time.monotonic())

    def _stamped(self, item: _Decoded, arrival: float) -> Media:
        if isinstance(item.payload, np.ndarray):
            self.stats.audio_chunks += 1
            self.stats.audio_samples += len(item.payload)
            return AudioChunk(item.payload, item.t_s, arrival)
        self.stats.video_frames += 1
        return VideoFrame(item.payload, item.t_s, arrival)

    # --- decoding in media-time order ------------------------------------------------------------------

    def _ordered(self) -> Iterator[_Decoded]:
        """Decode both streams; hand items out by media time, holding one stream back while the other catches up."""
        streams = [s for s in (self._audio, self._video) if s is not None]
        if self._video is not None:
            self._video.thread_type = "AUTO"
        pending: dict[int, deque[_Decoded]] = {s.index: deque() for s in streams}
        ended: set[int] = set()
        try:
            for packet in self._container.demux(streams):
                if self._closed.is_set():
                    return
                pending[packet.stream.index].extend(self._decode(packet))
                if packet.size == 0:  # the flush packet PyAV sends at the end of each stream
                    ended.add(packet.stream.index)
                yield from self._release(pending, ended)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(
                f"{self.path}: cannot decode past {self._reached_s:.2f} s; the file is corrupt or truncated ({exc})"
            ) from exc
        if self._audio is not None:
            pending[self._audio.index].extend(self._audio_item(self._resampler.flush()))
        yield from self._release(pending, set(pending))
        self._check_complete()

    def _decode(self, packet: av.Packet) -> list[_Decoded]:
        items: list[_Decoded] = []
        for frame in packet.decode():
            if isinstance(frame, av.AudioFrame):
                if problem := audio_problem(frame.sample_rate, frame.layout.nb_channels):
                    raise SourceError(f"{self.path}: at {self._reached_s:.2f} s, {problem}")
                if self._audio_t0 is None:
                    self._audio_t0 = max(0.0, (frame.time or self._t0) - self._t0)
                items.extend(self._audio_item(self._resampler.push(frame)))
            elif isinstance(frame, av.VideoFrame):
                t = frame.time - self._t0 if frame.time is not None else self._reached_s
                items.append(_Decoded(t, t, frame))
                self._reached_s = max(self._reached_s, t + self._frame_s)
        self.stats.format_changes = self._resampler.format_changes
        return items

    def _audio_item(self, samples: NDArray[np.float32]) -> list[_Decoded]:
        if samples.size == 0:
            return []
        start = (self._audio_t0 or 0.0) + self._queued_samples / SAMPLE_RATE
        self._queued_samples += len(samples)
        end = start + len(samples) / SAMPLE_RATE
        self._reached_s = max(self._reached_s, end)
        return [_Decoded(start, end, samples)]

    def _release(self, pending: dict[int, deque[_Decoded]], ended: set[int]) -> Iterator[_Decoded]:
        """Pop the earliest head while every stream still running has something queued, or while a queue holds
        more than MAX_PENDING items (a stream that stops early, e.g. audio shorter than the video, would
        otherwise hold the other's every frame back until the end of the file)."""
        while True:
            waiting = [q for index, q in pending.items() if not q and index not in ended]
            heads = [q for q in pending.values() if q]
            longest = max((len(q) for q in heads), default=0)
            self.pending_peak = max(self.pending_peak, longest)
            if not heads or (waiting and longest <= MAX_PENDING):
                return
            yield min(heads, key=lambda q: q[0].t_s).popleft()

    def _check_complete(self) -> None:
        if self._closed.is_set():
            return
        if self.stats.audio_chunks + self.stats.video_frames == 0:
            raise SourceError(f"{self.path}: no audio or video could be decoded; the file is corrupt or truncated")
        if self.duration_s is None:
            return
        missing = self.duration_s - self._reached_s
        if missing > max(TRUNCATION_TOLERANCE_S, 0.05 * self.duration_s):
            raise SourceError(
                f"{self.path}: the streams end at {self._reached_s:.2f} s but the file's header says "
                f"{self.duration_s:.2f} s; the file is truncated"
            )
