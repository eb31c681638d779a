"""Speaker media sources: a file, a local audio device or WebRTC tracks, behind one `Source` interface.

See `engine.sources.base` for the contract. Importing this package registers every implementation in
`SOURCES`; `create_source(SourceKind.FILE, path=...)` builds one by kind.
"""

from engine.sources.audio import MonoResampler
from engine.sources.base import (
    SOURCES,
    AudioChunk,
    DropOldestQueue,
    Media,
    Source,
    SourceError,
    SourceKind,
    SourceStats,
    VideoFrame,
    create_source,
    iterate_in_thread,
    register_source,
)
from engine.sources.device import AudioDeviceSource, choose_input_device, input_devices
from engine.sources.file import FileSource
from engine.sources.webrtc import WebRTCSource

__all__ = [
    "SOURCES",
    "AudioChunk",
    "AudioDeviceSource",
    "DropOldestQueue",
    "FileSource",
    "Media",
    "MonoResampler",
    "Source",
    "SourceError",
    "SourceKind",
    "SourceStats",
    "VideoFrame",
    "WebRTCSource",
    "choose_input_device",
    "create_source",
    "input_devices",
    "iterate_in_thread",
    "register_source",
]
