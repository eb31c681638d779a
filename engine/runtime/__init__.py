"""The streaming runtime: sources -> features/tracker -> windows -> backend -> smoothing -> renderer -> sink.

See `engine.runtime.engine` for the threads and their policies, `engine.stats` for how latency is measured.
"""

from engine.runtime.engine import StreamConfig, StreamEngine, Tracker, WindowModel
from engine.runtime.playout import SinkFactory
from engine.runtime.timelines import Emitted

__all__ = ["Emitted", "SinkFactory", "StreamConfig", "StreamEngine", "Tracker", "WindowModel"]
