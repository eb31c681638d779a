"""A local audio input device (PortAudio through sounddevice) as a speaker source: audio only.

    with AudioDeviceSource("USB") as source:  # a substring of the device's name, or its index
        for chunk in source: ...

PortAudio calls `_on_block` from its own thread; it only copies the block into a bounded queue (the oldest
block is dropped and counted when the consumer falls behind). The iterator resamples to 16 kHz mono. A device
that stops delivering (unplugged, stalled driver) ends the iteration with a `SourceError` after
`stall_timeout_s`, never a hang.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.features import SAMPLE_RATE
from engine.sources.audio import MonoResampler
from engine.sources.base import AudioChunk, DropOldestQueue, Source, SourceError, SourceKind, register_source
from engine.sources.base import run_with_timeout as _run_with_timeout

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 1.0  # how long close() waits for PortAudio to stop a stream


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:  # raised when the PortAudio library itself is missing
        fix = "install it (Debian: libportaudio2)"
        raise SourceError(f"cannot load PortAudio for audio devices ({exc}); {fix}") from exc
    return sounddevice


def _describe(device: Mapping[str, Any]) -> str:
    channels, rate = device["max_input_channels"], device["default_samplerate"]
    return f"{device['index']}: {device['name']} ({channels} ch, {rate:.0f} Hz)"


def choose_input_device(
    spec: str | int | None, devices: Sequence[Mapping[str, Any]], default: int | None = None
) -> Mapping[str, Any]:
    """Pick an input device from sounddevice's `query_devices()` list.

    `spec` is an index (int or digits), a case-insensitive substring of the name (an exact name wins over
    substrings), or None for `default` (or the first input). The error lists the input devices there are.
    """
    inputs = [d for d in devices if d["max_input_channels"] > 0]
    listing = "\n  ".join(_describe(d) for d in inputs) or "(none)"
    if not inputs:
        raise SourceError("no audio input devices found: PortAudio sees no capture device (is a microphone attached?)")
    if spec is None:
        return next((d for d in inputs if d["index"] == default), inputs[0])
    if isinstance(spec, int) or spec.strip().isdigit():
        found = [d for d in inputs if d["index"] == int(spec)]
    else:
        exact = [d for d in inputs if d["name"].lower() == spec.lower()]
        found = exact or [d for d in inputs if spec.lower() in d["name"].lower()]
    if len(found) > 1:
        names = "\n  ".join(_describe(d) for d in found)
        raise SourceError(f"audio device {spec!r} matches several input devices; give more of the name:\n  {names}")
    if not found:
        raise SourceError(f"no audio input device matches {spec!r}; available input devices:\n  {listing}")
    return found[0]


def input_devices() -> list[Mapping[str, Any]]:
    """The input devices PortAudio sees now (dicts with index, name, max_input_channels, default_samplerate)."""
    return [d for d in _sounddevice().query_devices() if d["max_input_channels"] > 0]


@register_source
class AudioDeviceSource(Source):
    """Speaker audio captured from a local input device at its own rate, delivered as 16 kHz mono chunks.

    `device`: index, name substring or None (the system default). `block_s`: seconds per captured block.
    `queue_s`: how much audio may wait for the consumer before the oldest blocks are dropped.
    `stall_timeout_s`: seconds without a block after which the device counts as gone.
    """

    kind = SourceKind.AUDIO_DEVICE

    def __init__(
        self,
        device: str | int | None = None,
        *,
        block_s: float = 0.02,
        queue_s: float = 2.0,
        stall_timeout_s: float = 2.0,
    ) -> None:
        super().__init__()
        sd = _sounddevice()
        info = choose_input_device(device, sd.query_devices(), sd.default.device[0])
        self.device_name, self.device_index = str(info["name"]), int(info["index"])
        self.rate = int(info["default_samplerate"])  # capture at the device's own rate; resample here
        self.channels = min(2, int(info["max_input_channels"]))
        self.block_frames = max(1, round(self.rate * block_s))
        self.stall_timeout_s = stall_timeout_s
        blocks = max(1, round(queue_s / block_s))
        self._queue: DropOldestQueue[tuple[NDArray[np.float32], float]] = DropOldestQueue(blocks)
        self._resampler = MonoResampler(what=f"audio device {self.device_name!r}")
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        try:
            self._stream = sd.InputStream(
                device=self.device_index, samplerate=self.rate, channels=self.channels, dtype="float32",
                blocksize=self.block_frames, callback=self._on_block, finished_callback=self._queue.close,
            )  # fmt: skip
        except sd.PortAudioError as exc:
            raise SourceError(f"audio device {self.device_name!r}: cannot open it for capture ({exc})") from exc

    @property
    def has_audio(self) -> bool:
        return True

    @property
    def has_video(self) -> bool:
        return False

    def _on_block(self, indata: NDArray[np.float32], frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: (frames, channels) float32 → queue. Nothing slow here."""
        if status.input_overflow:
            self.stats.overflows += 1
        self._queue.put((indata.copy(), time.monotonic()))

    def __iter__(self) -> Iterator[AudioChunk]:
        with self._lock:
            if self._started or self._closed.is_set():
                if self._closed.is_set():
                    return
                raise SourceError(f"audio device {self.device_name!r}: a source can be iterated only once")
            self._started = True
            self._stream.start()
        clock = 0  # 16 kHz samples of media time so far, dropped blocks included
        dropped = 0
        while (block := self._next_block()) is not None:
            samples, arrival = block
            if self._queue.dropped > dropped:  # keep media time honest across dropped blocks
                lost = (self._queue.dropped - dropped) * self.block_frames
                clock += round(lost * SAMPLE_RATE / self.rate)
                dropped = self._queue.dropped
                self.stats.dropped = dropped
            out = self._resampler.push_array(samples, self.rate)
            self.stats.format_changes = self._resampler.format_changes
            if out.size:
                yield AudioChunk(out, clock / SAMPLE_RATE, arrival)
                clock += len(out)
                self.stats.audio_chunks += 1
                self.stats.audio_samples += len(out)

    def _next_block(self) -> tuple[NDArray[np.float32], float] | None:
        """The next captured block; None once closed; SourceError when the device stalls or stops."""
        try:
            block = self._queue.get(self.stall_timeout_s)
        except TimeoutError:
            if self._closed.is_set():
                return None
            raise SourceError(
                f"audio device {self.device_name!r}: no audio for {self.stall_timeout_s:g} s; "
                "was it unplugged, muted by the system or taken by another program?"
            ) from None
        if block is None and not self._closed.is_set():
            raise SourceError(f"audio device {self.device_name!r}: the capture stream stopped (device disconnected?)")
        return block

    def close(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        self._queue.close()
        stream = self._stream

        def stop() -> None:
            stream.abort()
            stream.close()

        if not _run_with_timeout(stop, STOP_TIMEOUT_S, f"stop audio device {self.device_name}"):
            log.warning("audio device %r: PortAudio did not stop in %g s; leaving it", self.device_name, STOP_TIMEOUT_S)
            _skip_portaudio_teardown_at_exit()


def _skip_portaudio_teardown_at_exit() -> None:
    """A stream that would not stop is still being stopped by our daemon thread, maybe forever (a capture
    thread blocked in a stalled driver). sounddevice's exit handler would stop and close the same stream and
    terminate PortAudio concurrently: a hang at exit, or heap corruption ("double free") when our stop ends at
    the same moment. The process is ending anyway and the OS reclaims the device, so that handler is dropped.
    """
    handler = getattr(_sounddevice(), "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)
