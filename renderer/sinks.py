"""Where rendered frames go: one `Sink` interface, a registry keyed by `SinkKind`, and the built-in sinks.

    with create_sink(SinkKind.MP4, path="out.mp4", width=640, height=360, fps=30) as sink:
        sink.write(rgb, timestamp_s=k / 30)

Every sink takes keyword-only arguments `width`, `height`, `fps` plus its own options, accepts
(height, width, 3) uint8 RGB frames with non-decreasing timestamps in seconds, and can be closed twice.
A sink opened with an audio track (`Mp4Sink(audio_rate=16000)`; `sink.audio` is not None) also takes
`write_audio(samples, start_s)`: audio placed on the same clock as the frames' timestamps.
An I/O failure (a file that cannot be written, a full disk) is a SinkError, whatever the sink.
The WebRTC track sink lives in `renderer.track` (it is the only part that needs aiortc) and is loaded on demand.
`parse_size` is the one frame-size rule of every command (`python -m renderer`, `reactdiff-engine`).
`to_i420` and `yuv420p_frame` are the one conversion to what the encoders take (the mp4 sink, the WebRTC track).
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import av
import cv2
import numpy as np
import pyvirtualcam
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)


class SinkKind(enum.Enum):
    """The kinds of sink `create_sink` can make."""

    VIRTUAL_CAMERA = "virtual_camera"
    MP4 = "mp4"
    PNG = "png"
    WEBRTC = "webrtc"
    TEE = "tee"
    """Several sinks of one size fed the same frames (`TeeSink`)."""


class SinkError(RuntimeError):
    """A sink could not be opened or written; the message says how to fix it."""


DEFAULT_SIZE = (256, 256)
"""Frame (width, height) in pixels of files (mp4, PNG) when a command is given no --size: small and quick to
write, the size the trainer's renders and evaluation use."""
DEFAULT_SIZES: dict[SinkKind, tuple[int, int]] = {
    SinkKind.MP4: DEFAULT_SIZE,
    SinkKind.PNG: DEFAULT_SIZE,
    SinkKind.VIRTUAL_CAMERA: (1280, 720),  # what video-call apps expect of a webcam (16:9 HD)
    SinkKind.WEBRTC: (640, 480),  # a room's avatar track: VGA, which a 2-core laptop encodes in real time
}
"""Frame (width, height) in pixels per sink when a command is given no --size."""
MIN_SIDE, MAX_SIDE = 16, 4096  # pixels; mp4 (yuv420p) also needs even sides, so every size is even


def parse_size(text: str) -> tuple[int, int]:
    """ "640x360" -> (640, 360): even widths and heights from 16 to 4096 pixels, good for every sink.

    Raises ValueError saying what is wrong (each command names its option in front of the message).
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r}: expected WIDTHxHEIGHT, e.g. {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}")
    width, height = int(match[1]), int(match[2])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE) or width % 2 or height % 2:
        raise ValueError(f"{text}: width and height must be even, from {MIN_SIDE} to {MAX_SIDE} pixels")
    return width, height


def to_i420(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB, even sides -> (H * 3 // 2, W) uint8 planar Y, U, V (4:2:0).

    BT.601 limited range (Y 16-235), the matrix and range that PyAV's swscale uses by default and that libx264
    and libvpx assume for untagged frames; chroma is the mean of each 2x2 block. OpenCV does it in ~0.3 ms at
    1280x720 on one thread, swscale in ~4 ms (tests/renderer/test_sinks.py compares the decoded pictures).
    """
    return np.asarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), np.uint8)


def yuv420p_frame(planes: NDArray[np.uint8]) -> av.VideoFrame:
    """A yuv420p `av.VideoFrame` over `to_i420` planes, which it keeps alive and shares (no copy: leave them
    unchanged from now on). Encoders take it as it is: their `reformat` to yuv420p returns the same frame.

    Not `from_ndarray`: its copy into a newly allocated frame costs more than the conversion (1.6 ms against
    0.14 ms at 1280x720 here, from the page faults of a fresh 1.4 MB buffer every frame)."""
    return av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")


def check_writable(path: str | Path) -> Path:
    """Check, before any work is done, that a file can be written at `path`: its folder exists and takes
    files, and `path` is not a folder nor a file that cannot be overwritten. Raises SinkError saying which.

    The check creates the file (append mode: an existing file keeps its contents) and removes it again when it
    did not exist before, as the only test that knows about read-only mounts, /proc and permissions alike.
    """
    path = Path(path)
    if path.is_dir():
        raise SinkError(f"{path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise SinkError(f"{path}: folder {path.parent} does not exist")
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
    except OSError as err:
        raise SinkError(f"{path}: cannot write a file there ({err.strerror})") from None
    if not existed:
        path.unlink()
    return path


def place_samples(planes: NDArray[np.float32], start: int, written: int) -> NDArray[np.float32]:
    """Fit (channels, N) samples that start at sample `start` onto a track holding samples 0..written-1.

    A gap (start > written) is filled with silence; samples before `written` (an overlap) are cut, so the
    result continues the track exactly at sample `written`.
    """
    if start >= written:
        return np.concatenate([np.zeros((len(planes), start - written), planes.dtype), planes], axis=1)
    return planes[:, written - start :]


class AudioTrack:
    """One audio stream of a PyAV output container (AAC, or e.g. "pcm_s16le" for .wav), fed float samples.

    The track is contiguous from sample 0 (time 0 of the container): `write(samples, start_s)` places samples at
    `start_s`, filling a gap with silence and cutting an overlap (`place_samples`). Create it before anything
    is muxed (streams cannot be added once the container's header is written); not thread-safe, like the container.
    """

    def __init__(
        self, container: av.container.OutputContainer, *, rate: int, channels: int = 1, codec: str = "aac"
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"audio track: 1 (mono) or 2 (stereo) channels, got {channels}")
        if rate <= 0:
            raise ValueError(f"audio track: the sample rate must be positive, got {rate}")
        self.rate, self.channels, self._container = int(rate), channels, container
        stream = container.add_stream(codec, rate=self.rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono" if channels == 1 else "stereo"
        self._stream = stream
        self.samples_written = 0  # the track holds samples 0..samples_written-1 (silence in the gaps)

    def write(self, samples: ArrayLike, start_s: float | None = None) -> None:
        """Add (N,) mono or (channels, N) float samples in [-1, 1] whose first one plays at `start_s` seconds
        (None: right after the samples written so far)."""
        planes = np.atleast_2d(np.asarray(samples, dtype=np.float32))
        if planes.ndim != 2 or len(planes) != self.channels:
            raise ValueError(f"audio track: expected {self.channels} channel(s) of samples, got shape {planes.shape}")
        if start_s is not None:
            if not math.isfinite(start_s) or start_s < 0:
                raise ValueError(f"audio track: start_s must be a finite time >= 0 s, got {start_s}")
            planes = place_samples(planes, round(start_s * self.rate), self.samples_written)
        if planes.shape[1] == 0:
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=self._stream.layout.name)
        frame.sample_rate, frame.pts = self.rate, self.samples_written  # pts in samples (time base 1/rate)
        self._container.mux(self._stream.encode(frame))  # the encoder cuts its own frame size (AAC: 1024)
        self.samples_written += planes.shape[1]

    def flush(self) -> None:
        """Encode what the encoder still holds; call once, before closing the container."""
        self._container.mux(self._stream.encode(None))


class Sink(ABC):
    """A destination for RGB frames. Subclasses implement `_write` and `_close`.

    `audio` is the sink's audio track, or None for a video-only sink (the default).
    """

    kind: ClassVar[SinkKind]
    audio: AudioTrack | None = None

    def __init__(self, *, width: int, height: int, fps: float = 30.0) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"{type(self).__name__}: frame size must be positive, got {width}x{height}")
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"{type(self).__name__}: fps must be a positive number, got {fps}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames_written = 0
        self._closed = False
        self._last_timestamp = -math.inf

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, frame: np.ndarray, timestamp_s: float) -> None:
        """Send one (height, width, 3) uint8 RGB frame shown at `timestamp_s` seconds."""
        name = type(self).__name__
        if self._closed:
            raise SinkError(f"{name}: write() after close(); create a new sink")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            got = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
            raise TypeError(f"{name}: frames must be uint8 numpy arrays, got {got}; convert with .astype(np.uint8)")
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(
                f"{name}: expected a frame of shape ({self.height}, {self.width}, 3) (H, W, RGB), got {frame.shape}"
            )
        if not math.isfinite(timestamp_s) or timestamp_s < self._last_timestamp:
            raise ValueError(
                f"{name}: timestamps must be finite and non-decreasing, got {timestamp_s} after {self._last_timestamp}"
            )
        self._last_timestamp = timestamp_s
        with self._io_errors():
            self._write(frame, timestamp_s)
        self.frames_written += 1

    def write_audio(self, samples: NDArray[np.float32], start_s: float) -> None:
        """Add (N,) float32 mono samples whose first one plays at `start_s` on the clock of the frame timestamps."""
        name = type(self).__name__
        if self._closed:
            raise SinkError(f"{name}: write_audio() after close(); create a new sink")
        if self.audio is None:
            raise SinkError(f"{name}: this sink has no audio track; open it with one (Mp4Sink(audio_rate=...))")
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 1:
            got = (samples.dtype, samples.shape) if isinstance(samples, np.ndarray) else type(samples).__name__
            raise TypeError(f"{name}: audio must be a 1-D float32 numpy array (mono), got {got}")
        with self._io_errors():
            self._write_audio(samples, start_s)

    def close(self) -> None:
        """Flush and release the sink; later calls do nothing."""
        if not self._closed:
            self._closed = True
            with self._io_errors():
                self._close()

    @contextlib.contextmanager
    def _io_errors(self) -> Iterator[None]:
        """An OSError of the sink's I/O (PyAV raises OSError subclasses too) -> SinkError naming the sink."""
        try:
            yield
        except OSError as err:
            raise SinkError(f"{type(self).__name__}: {err}") from err

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        """Deliver a checked frame."""

    @abstractmethod
    def _close(self) -> None:
        """Release resources; called exactly once."""

    def _write_audio(self, samples: NDArray[np.float32], start_s: float) -> None:
        """Deliver checked audio to the sink's track (`audio` is not None here)."""
        assert self.audio is not None
        self.audio.write(samples, start_s)


VIRTUAL_CAMERA_HELP = (
    "no virtual camera device is available. Create one first:\n"
    '  Linux:   sudo modprobe v4l2loopback exclusive_caps=1 card_label="ReactDiff Live"\n'
    "           (Debian/Ubuntu package v4l2loopback-dkms)\n"
    "  Windows: install OBS Studio (26+) and press 'Start Virtual Camera' once\n"
    "  macOS:   install OBS Studio (26+) and press 'Start Virtual Camera' once (allow the system extension)"
)


class VirtualCameraSink(Sink):
    """A virtual webcam (pyvirtualcam) that Zoom, Meet or Teams can select. Frames are sent as they come;
    pace the caller (see `renderer.timing.FrameClock`)."""

    kind = SinkKind.VIRTUAL_CAMERA

    def __init__(
        self, *, width: int, height: int, fps: float = 30.0, device: str | None = None, backend: str | None = None
    ) -> None:
        super().__init__(width=width, height=height, fps=fps)
        try:
            self._camera = pyvirtualcam.Camera(
                self.width, self.height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device, backend=backend
            )
        except (RuntimeError, KeyError) as err:
            self._closed = True
            raise SinkError(f"virtual camera: {err}\n{VIRTUAL_CAMERA_HELP}") from err
        logger.info("virtual camera %s (%s) open at %dx%d", self._camera.device, self._camera.backend, width, height)

    @property
    def device(self) -> str:
        return str(self._camera.device)

    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        self._camera.send(np.ascontiguousarray(frame))

    def _close(self) -> None:
        self._camera.close()


class Mp4Sink(Sink):
    """An H.264 (yuv420p) mp4 file written with PyAV; frame timestamps become presentation times.

    With `audio_rate` (Hz) the file also gets a mono AAC track fed by `write_audio`, on the frames' clock.
    """

    kind = SinkKind.MP4

    def __init__(
        self,
        *,
        path: str | Path,
        width: int,
        height: int,
        fps: float = 30.0,
        crf: int = 20,
        preset: str = "veryfast",
        audio_rate: int | None = None,
    ) -> None:
        super().__init__(width=width, height=height, fps=fps)
        if self.width % 2 or self.height % 2:
            raise ValueError(f"mp4 (yuv420p) needs an even frame size, got {self.width}x{self.height}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SinkError(f"mp4 {self.path}: cannot make folder {self.path.parent} ({err.strerror})") from None
        check_writable(self.path)  # PyAV would only fail at the first frame, with its own traceback
        self._rate = Fraction(self.fps).limit_denominator(1001)
        self._container = av.open(str(self.path), mode="w")
        stream = self._container.add_stream("libx264", rate=self._rate)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        self._stream = stream
        self._last_pts = -1
        if audio_rate is not None:
            try:
                self.audio = AudioTrack(self._container, rate=audio_rate)
            except ValueError:
                self._closed = True
                self._container.close()
                raise

    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        pts = max(round(timestamp_s * self._rate), self._last_pts + 1)  # in frames; never repeat a pts
        self._last_pts = pts
        video = yuv420p_frame(to_i420(frame))
        video.pts, video.time_base = pts, 1 / self._rate
        self._container.mux(self._stream.encode(video))

    def _close(self) -> None:
        self._container.mux(self._stream.encode(None))
        if self.audio is not None:
            self.audio.flush()
        self._container.close()


class PngSink(Sink):
    """A folder of numbered PNG files (`pattern` formatted with the frame index, counting from `start`)."""

    kind = SinkKind.PNG

    def __init__(
        self,
        *,
        directory: str | Path,
        width: int,
        height: int,
        fps: float = 30.0,
        pattern: str = "{index:06d}.png",
        start: int = 0,
    ) -> None:
        super().__init__(width=width, height=height, fps=fps)
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SinkError(f"PNG folder {self.directory}: cannot make it ({err.strerror})") from None
        self.pattern, self._index = pattern, start
        self._codec = _png_codec(self.width, self.height)

    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        _encode_png(self._codec, frame, self.directory / self.pattern.format(index=self._index))
        self._index += 1

    def _close(self) -> None:
        # PNG frames are encoded one at a time, so nothing is buffered; say where the files went
        logger.info("wrote %d PNG files to %s", self.frames_written, self.directory)


class TeeSink(Sink):
    """Feeds every frame to each of several sinks of one size (a room's WebRTC track and a virtual camera or an
    mp4, say). Audio goes to every part with an audio track; `audio` is the first such track (None: no part has
    one). Closing the tee closes its parts; `kinds` says what they are."""

    kind = SinkKind.TEE

    def __init__(self, *, sinks: Sequence[Sink], width: int, height: int, fps: float = 30.0) -> None:
        super().__init__(width=width, height=height, fps=fps)
        if not sinks:
            raise ValueError("TeeSink: give at least one sink to feed")
        sizes = {(s.width, s.height) for s in sinks}
        if sizes != {(self.width, self.height)}:
            raise ValueError(f"TeeSink: every sink must take {self.width}x{self.height} frames, got {sorted(sizes)}")
        self.sinks = list(sinks)
        self.audio = next((s.audio for s in self.sinks if s.audio is not None), None)

    @property
    def kinds(self) -> list[SinkKind]:
        """The kinds of the parts, in the order they are fed."""
        return [s.kind for s in self.sinks]

    def _write(self, frame: np.ndarray, timestamp_s: float) -> None:
        for sink in self.sinks:
            sink.write(frame, timestamp_s)

    def _write_audio(self, samples: NDArray[np.float32], start_s: float) -> None:
        for sink in self.sinks:
            if sink.audio is not None:
                sink.write_audio(samples, start_s)

    def _close(self) -> None:
        with contextlib.ExitStack() as parts:  # closes every part (first to last) even when one of them fails
            for sink in reversed(self.sinks):
                parts.callback(sink.close)


def _png_codec(width: int, height: int) -> av.VideoCodecContext:
    codec = av.CodecContext.create("png", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    return codec


def _encode_png(codec: av.VideoCodecContext, rgb: np.ndarray, path: Path) -> None:
    video = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    path.write_bytes(b"".join(bytes(packet) for packet in codec.encode(video)))


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write one (H, W, 3) uint8 RGB image as a PNG file."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"save_png({path}): expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    _encode_png(_png_codec(rgb.shape[1], rgb.shape[0]), rgb, Path(path))


_BUILT_IN: dict[SinkKind, type[Sink]] = {
    SinkKind.VIRTUAL_CAMERA: VirtualCameraSink,
    SinkKind.MP4: Mp4Sink,
    SinkKind.PNG: PngSink,
    SinkKind.TEE: TeeSink,
}
_LAZY: dict[SinkKind, str] = {SinkKind.WEBRTC: "renderer.track:WebRTCSink"}  # loaded on first use (aiortc)


def sink_class(kind: SinkKind | str) -> type[Sink]:
    """The Sink subclass registered for `kind` (a SinkKind or its value, e.g. "mp4")."""
    try:
        kind = SinkKind(kind)
    except ValueError as err:
        choices = ", ".join(k.value for k in SinkKind)
        raise ValueError(f"unknown sink kind {kind!r}; choose one of {choices}") from err
    if kind not in _BUILT_IN:
        module, name = _LAZY[kind].split(":")
        _BUILT_IN[kind] = getattr(importlib.import_module(module), name)
    return _BUILT_IN[kind]


def create_sink(kind: SinkKind | str, **options: Any) -> Sink:
    """Open a sink of `kind` with its keyword options (width, height, fps and the sink's own)."""
    return sink_class(kind)(**options)
