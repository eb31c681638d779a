"""`reactdiff-engine`: a listener avatar that reacts to a speaker, from a file or live into a virtual camera.

    reactdiff-engine --model models/base --input speaker.mp4 --output listener.mp4 --side-by-side --stats s.json
    reactdiff-engine --model models/base --audio-device "USB Mic" --output virtualcam [--camera-device /dev/video2]
    reactdiff-engine --room local --avatar me.jpg          # your own portrait, animated, in a call
    reactdiff-engine --room local --persona nodder --expressiveness 1.5   # who listens (the page can change it)
    reactdiff-engine --input speaker.mp4 --output l.mp4 --params-out listener.jsonl   # the frames, for your renderer
    reactdiff-engine --list-audio-devices
    reactdiff-engine --list-personas [--model DIR]
    reactdiff-engine serve --port 8090                     # many calls, one process: see engine/serving/cli.py

Files run through the same streaming engine as live input: as fast as possible (`--fast`, the default for
files: lossless, every window runs) or paced in real time (`--realtime`: late work is dropped, as live).
An mp4 output carries the speaker's audio (AAC) when the speaker has audio, in sync with the --side-by-side panel.
User mistakes (a missing model, a corrupt file, an unknown device, an output that cannot be written) print one
line and exit with status 2, before anything starts where they can be seen from the arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.interrupt import StopSignals
from engine.models import default_model_dir
from engine.runtime.playout import SinkFactory
from engine.windows import check_temperature

log = logging.getLogger(__name__)

PROG = "reactdiff-engine"
VIRTUAL_CAMERA = "virtualcam"
LOCAL_ROOM = "local"
FAST_TRACKERS = 2  # --fast: MediaPipe releases the GIL, so two trackers keep both cores of a laptop busy
MAX_TRACKERS = 8


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from engine.backends import AUTO, BackendKind
    from engine.listener import ANYONE, EXPRESSIVENESS_RANGE
    from renderer.vector import STYLES

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Generate a listener's face reacting to a speaker (ReactDiff) and draw it as an avatar, "
        "from a media file into an mp4, or live from an audio device into a virtual camera.",
        epilog="Ctrl-C or SIGTERM stops at the next safe point (the mp4 and --stats are finished; a second Ctrl-C "
        "quits at once). Exit status: 0 done, 2 a mistake to fix (the one-line error says how), 130 stopped by "
        "Ctrl-C, 143 stopped by SIGTERM.",
    )
    io = parser.add_argument_group("input and output")
    src = io.add_mutually_exclusive_group()
    src.add_argument("--input", metavar="FILE", type=Path, help="speaker media file (mp4, mkv, webm, wav, ...)")
    src.add_argument("--audio-device", metavar="NAME", help="live speaker audio from this input device (name or index)")
    src.add_argument("--list-audio-devices", action="store_true", help="list audio input devices and exit")
    src.add_argument("--list-personas", action="store_true", help="list the personas the model (--model) names, "
                     "for --persona, and exit")  # fmt: skip
    src.add_argument("--room", metavar="URL", help="join a call as a participant and react to its active speaker: "
                     "http(s)://HOST:PORT/r/ROOM?token=... (reactdiff-room), janus+ws://HOST:8188/?room=ID, or 'local' "
                     "(start a room on 127.0.0.1 and print its URL); "
                     f"--output {VIRTUAL_CAMERA} may run at the same time")  # fmt: skip
    io.add_argument(
        "--output",
        metavar="OUT",
        help=f"listener video: a .mp4 file (with the speaker's audio, if any), or "
        f"'{VIRTUAL_CAMERA}' for the virtual webcam",
    )
    io.add_argument(
        "--camera-device", metavar="DEVICE", help=f"with --output {VIRTUAL_CAMERA}: which virtual camera to feed "
        "when there are several (Linux: /dev/videoN; default: the first free one)",
    )  # fmt: skip
    io.add_argument(
        "--side-by-side", action="store_true", help="draw the speaker's video left of the avatar (files and devices)"
    )
    io.add_argument("--stats", metavar="FILE.json", type=Path, help="write latency, drops, speed and the listener's "
                    "persona and expressiveness (with every change) as JSON here")  # fmt: skip
    io.add_argument(
        "--params-out", metavar="FILE", type=Path, help="also write the generated listener frames (58 face values "
        "each, renderer.face's names, after smoothing: what the avatar is drawn from) with their media time in "
        "seconds: .npz (faces, t_s; written at the end), or .jsonl / .csv (a line per frame, flushed as they come, "
        "to drive your own renderer live)",
    )  # fmt: skip
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        metavar="DIR",
        type=Path,
        help="model directory (reactdiff-trainer export; default: the base model shipped with the package)",
    )
    low, high = EXPRESSIVENESS_RANGE
    model.add_argument(
        "--persona", metavar="NAME|FILE.npy", help=f"who listens: a persona the model names (its manifest lists the "
        f"personas of its training corpus, written by reactdiff-trainer export; see --list-personas), '{ANYONE}' (no "
        f"one in particular, the default), or a .npy of a listener's own face frames ((T, 58), at least the model's "
        f"reference length: 4 s for 100 frames), whose style it takes. In a room, the page can change it",
    )  # fmt: skip
    model.add_argument(
        "--expressiveness", metavar="X", type=float, help=f"how much the listener moves, relative to the persona: "
        f"{low} to {high} (1 = as the persona does, 2 = twice as much; default: as its style moves). In a room, the "
        "page can change it",
    )  # fmt: skip
    kinds = [AUTO, *(k.value for k in BackendKind)]
    model.add_argument("--backend", default=AUTO, choices=kinds, help="inference backend (default: auto)")
    model.add_argument("--steps", type=int, metavar="K", help="sampler steps per window (default: the model's)")
    model.add_argument("--sampler", choices=["ddim", "dpmpp2m"], help="sampler (default: the model's)")
    model.add_argument("--seed", type=int, default=0, help="noise seed; the same seed gives the same reaction")
    model.add_argument(
        "--temperature", type=float, default=1.0, metavar="T",
        help="how far from the model's most likely reaction the listener may go, 0 to 1.5 (default 1: the model's "
        "own variety; another --seed is another attentive listener; 0: the most likely reaction every time)",
    )  # fmt: skip
    model.add_argument("--hop", type=int, metavar="H", help="frames (40 ms) between windows (default: the model's)")
    model.add_argument("--threads", type=int, default=1, help="intra-op threads of the backend (default 1)")
    model.add_argument(
        "--face-model", metavar="PATH", type=Path, help="MediaPipe face_landmarker.task (default: the installed copy)"
    )
    model.add_argument(
        "--trackers", type=int, metavar="N", help="face trackers on alternate video frames in --fast mode, one per "
        f"core (default {FAST_TRACKERS}; 1 gives exactly the faces live input and training get); live input uses one",
    )  # fmt: skip
    run = parser.add_argument_group("timing and display")
    pace = run.add_mutually_exclusive_group()
    pace.add_argument("--realtime", action="store_true", help="pace a file in real time and drop late work, as live")
    pace.add_argument("--fast", action="store_true", help="process a file as fast as possible (default for files)")
    run.add_argument(
        "--playout-delay-ms", type=float, metavar="MS", help="fixed input-to-display delay in real time "
        "(default: adaptive, the least that had 99 %% of recent listener frames ready in time, 600 ms at most)",
    )  # fmt: skip
    sizes = ", ".join(f"{w}x{h} {what}" for what, (w, h) in default_sizes().items())
    run.add_argument("--size", metavar="WxH", help=f"avatar size in pixels, even (default: {sizes})")
    run.add_argument(
        "--avatar", "--style", dest="avatar", default="default", metavar="STYLE|PHOTO",
        help=f"who the listener is: a drawn style ({', '.join(STYLES)}) or your own portrait photo (.jpg, .png, "
        ".webp; prepared once, then cached); default: default. --style is the same option",
    )  # fmt: skip
    run.add_argument(
        "--background", metavar="COLOR|IMAGE", help="avatar background: R,G,B (e.g. 230,236,242), #rrggbb or an "
        "image file (default: the style's colour, or the photo's own background)",
    )  # fmt: skip
    run.add_argument(
        "--delay-probe", action="store_true", help="diagnostic: read the frame index barcode in each speaker video "
        "frame and draw, on each avatar frame, the index of the newest speaker frame it depended on, so the room "
        "page measures the delay from the camera to the screen (engine/runtime/probe.py has the barcode)",
    )  # fmt: skip
    run.add_argument("--quiet", action="store_true", help="no status line on stderr")
    run.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    return parser


def default_sizes() -> dict[str, tuple[int, int]]:
    """The avatar size without --size, by where it goes (renderer.sinks.DEFAULT_SIZES)."""
    from renderer.sinks import DEFAULT_SIZES, SinkKind

    return {"mp4": DEFAULT_SIZES[SinkKind.MP4], "room": DEFAULT_SIZES[SinkKind.WEBRTC],
            VIRTUAL_CAMERA: DEFAULT_SIZES[SinkKind.VIRTUAL_CAMERA]}  # fmt: skip


def parse_size(text: str | None, args: argparse.Namespace) -> tuple[int, int]:
    """--size by the renderer's one rule (renderer.sinks.parse_size: even, 16 to 4096 pixels); without it, the
    default of the output: a room (also when it feeds the camera too: one size for both), the camera, an mp4."""
    from renderer.sinks import parse_size as frame_size

    if text is None:
        where = "room" if args.room is not None else VIRTUAL_CAMERA if args.output == VIRTUAL_CAMERA else "mp4"
        return default_sizes()[where]
    try:
        return frame_size(text)
    except ValueError as exc:
        raise UserError(f"--size {exc}") from None


def open_avatar(args: argparse.Namespace, size: tuple[int, int], background: Any) -> Any:
    """--avatar made once, before the model loads or a room is joined: a photo is prepared (or read from its
    cache) here, so a bad one is refused before anything starts; the player draws with this avatar."""
    from renderer.avatar import create_avatar

    try:
        return create_avatar(args.avatar, width=size[0], height=size[1], background=background)
    except (ValueError, OSError) as exc:  # AvatarError is a ValueError; a missing or unreadable photo an OSError
        raise UserError(f"--avatar {args.avatar}: {exc}") from None


def parse_background(text: str | None) -> Any:
    """--background by the renderer's one parser (renderer.avatar.parse_background); None: the style's colour."""
    if text is None:
        return None
    from renderer.avatar import parse_background as background

    try:
        return background(text)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(f"--background: {exc}") from None


def writable(path: Path, option: str) -> Path:
    """`path` if a file can be written there (renderer.sinks.check_writable), checked before the run starts."""
    from renderer.sinks import SinkError, check_writable

    try:
        return check_writable(path)
    except SinkError as exc:
        raise UserError(f"{option}: {exc}") from None


@dataclass(frozen=True)
class Output:
    """Where the avatar goes: an mp4 path, or the virtual camera (path None)."""

    path: Path | None
    camera_device: str | None = None
    """The virtual camera to feed (pyvirtualcam's `device`); None: the first free one."""

    @property
    def live(self) -> bool:
        return self.path is None

    def factory(self, *, audio_rate: int | None = None) -> SinkFactory:
        """Opens the sink; an mp4 gets an AAC track at `audio_rate` Hz for the speaker's audio (None: video only)."""
        from renderer.sinks import SinkKind, create_sink

        if self.path is None:
            device = self.camera_device
            return lambda w, h: create_sink(SinkKind.VIRTUAL_CAMERA, width=w, height=h, fps=30.0, device=device)
        path = self.path
        return lambda w, h: create_sink(SinkKind.MP4, path=path, width=w, height=h, fps=30.0, audio_rate=audio_rate)


def parse_output(text: str | None, camera_device: str | None = None) -> Output:
    """--output: the virtual camera (on `camera_device`), or an mp4 file that can be written."""
    if not text:
        raise UserError(f"--output is required: a .mp4 file or '{VIRTUAL_CAMERA}'")
    if text == VIRTUAL_CAMERA:
        return Output(None, camera_device)
    path = Path(text)
    if path.suffix.lower() != ".mp4":
        raise UserError(f"--output {text}: write a .mp4 file or '{VIRTUAL_CAMERA}'")
    return Output(writable(path, "--output"))


def check_args(args: argparse.Namespace) -> None:
    """Mistakes seen from the arguments alone (and a --stats file that cannot be written), before anything starts."""
    if args.model is None:
        args.model = default_model_dir()
    if args.model is None:
        raise UserError(
            "this installation carries no default model: pass --model DIR (make one with reactdiff-trainer export)"
        )
    if args.input is None and args.audio_device is None and args.room is None:
        raise UserError("give --input FILE or --audio-device NAME (see --list-audio-devices), or --room URL")
    if (args.audio_device is not None or args.room is not None) and args.fast:
        raise UserError("--fast needs a file: a live device runs in real time")
    if args.fast and args.output == VIRTUAL_CAMERA:
        raise UserError(f"--fast has no clock to pace --output {VIRTUAL_CAMERA}: leave it out (a camera is fed in "
                        "real time)")  # fmt: skip
    if args.camera_device is not None and args.output != VIRTUAL_CAMERA:
        raise UserError(f"--camera-device {args.camera_device}: only with --output {VIRTUAL_CAMERA}")
    if args.room is not None and args.side_by_side:
        raise UserError("--side-by-side is for files and devices: in a room, the participants see the speaker "
                        "themselves and the avatar track has the avatar's size")  # fmt: skip
    if args.steps is not None and not 1 <= args.steps <= 50:
        raise UserError(f"--steps {args.steps}: use 1 to 50 sampler steps")
    try:
        check_temperature(args.temperature)
    except ValueError as exc:
        raise UserError(f"--{exc}") from None
    if args.threads < 1:
        raise UserError(f"--threads {args.threads}: use at least 1")
    if args.trackers is not None and not 1 <= args.trackers <= MAX_TRACKERS:
        raise UserError(f"--trackers {args.trackers}: use 1 to {MAX_TRACKERS}")
    if args.playout_delay_ms is not None and args.playout_delay_ms <= 0:
        raise UserError(f"--playout-delay-ms {args.playout_delay_ms}: must be positive")
    if args.expressiveness is not None:
        from engine.listener import ListenerError, check_expressiveness

        try:
            check_expressiveness(args.expressiveness, "--expressiveness")
        except ListenerError as exc:
            raise UserError(str(exc)) from None
    if args.stats is not None:
        writable(args.stats, "--stats")
    if args.params_out is not None:
        from engine.params_out import params_format

        try:
            params_format(args.params_out)
        except ValueError as exc:
            raise UserError(f"--params-out {exc}") from None
        writable(args.params_out, "--params-out")


def check_hop(args: argparse.Namespace) -> None:
    """--hop against the model's window by engine.windows' rule, read from the manifest alone (no hashes, no
    graphs): before the backend loads or a room is joined. (The model's own hop is checked when it loads.)"""
    if args.hop is None:
        return
    from engine.model_dir import ModelDirError, load_model_dir
    from engine.windows import check_hop as hop_rule

    try:
        hop_rule(args.hop, load_model_dir(args.model, verify_hashes=False).window, "--hop")
    except (ModelDirError, ValueError) as exc:
        raise UserError(str(exc)) from None


def open_listener(args: argparse.Namespace, model: Any) -> Any:
    """--persona and --expressiveness as `model` (engine.model_dir.ModelDir) takes them: an
    engine.listener.ListenerControl, made before a room is joined or the input opened (a persona file goes through
    the style graph here). None for a model without a style input when neither is given; with either, such a model
    is refused."""
    from engine.listener import ANYONE, ListenerChoices, ListenerControl, ListenerError

    if model.style is None and args.persona is None and args.expressiveness is None:
        return None
    persona = args.persona or ANYONE
    reference = Path(persona) if persona.lower().endswith(".npy") else None
    if reference is not None and not reference.is_file():
        raise UserError(f"--persona {persona}: no such file (give a .npy of a listener's own face frames, or a name)")
    try:
        choices = ListenerChoices.from_model(model, reference)
        return ListenerControl(choices, choices.choose(persona if reference is None else reference.name,
                                                       args.expressiveness))  # fmt: skip
    except ListenerError as exc:
        given = f"--persona {args.persona}" if args.persona is not None else f"--expressiveness {args.expressiveness}"
        raise UserError(f"{given}: {exc}") from None


def list_personas(args: argparse.Namespace) -> int:
    """--list-personas: the names --persona takes, one a line, with each one's motion energy."""
    from engine.listener import ANYONE
    from engine.model_dir import ModelDirError, load_model_dir
    from renderer.face import FPS

    args.persona = args.expressiveness = None
    if args.model is None:
        args.model = default_model_dir()
    if args.model is None:
        raise UserError("this installation carries no default model: pass --model DIR")
    try:
        model = load_model_dir(args.model)
    except ModelDirError as exc:
        raise UserError(str(exc)) from None
    control = open_listener(args, model)
    if control is None:
        raise UserError(f"--list-personas: model {args.model} takes no persona (a model directory of format version "
                        "1); use a model exported with personas")  # fmt: skip
    choices = control.choices
    for name, persona in choices.personas.items():
        what = "no one in particular (the default)" if name == ANYONE else "named by the model"
        print(f"{name:16s} motion energy {persona.energy / choices.energy_mean:5.2f} x the corpus mean  ({what})")
    print("or --persona FILE.npy: a listener's own face frames, at least "
          f"{choices.reference_frames} ({choices.reference_frames / FPS:.0f} s)")  # fmt: skip
    return 0


def list_devices() -> int:
    from engine.sources import input_devices

    for device in input_devices():
        print(f"{device['index']:3d}  {device['name']}  ({device['max_input_channels']} ch, "
              f"{device['default_samplerate']:.0f} Hz)")  # fmt: skip
    return 0


def open_backend(args: argparse.Namespace) -> Any:
    from engine.backends import BackendUnavailable, create_backend
    from engine.model_dir import ModelDirError

    try:
        return create_backend(args.backend, args.model, steps=args.steps, sampler=args.sampler, threads=args.threads)
    except (ModelDirError, BackendUnavailable, ValueError) as exc:
        raise UserError(str(exc)) from None


def open_source(args: argparse.Namespace, realtime: bool) -> Any:
    from engine.sources import AudioDeviceSource, FileSource

    if args.input is not None:
        return FileSource(args.input, realtime=realtime)
    return AudioDeviceSource(args.audio_device)


def open_tracker(args: argparse.Namespace, source: Any, realtime: bool) -> Any:
    """None without video; live: one FaceTracker; --fast: `--trackers` of them on alternate frames."""
    if not source.has_video:
        return None
    from engine.tracker import FaceModelError, FaceTracker, ParallelFaceTracker

    workers = 1 if realtime else args.trackers or FAST_TRACKERS
    if realtime and (args.trackers or 1) > 1:
        log.warning("--trackers %d: real-time input is tracked by one tracker (it keeps up)", args.trackers)
    try:
        return FaceTracker(args.face_model) if workers == 1 else ParallelFaceTracker(args.face_model, workers=workers)
    except FaceModelError as exc:
        raise UserError(str(exc)) from None


def stream(args: argparse.Namespace, stop: StopSignals) -> int:
    from engine.features import SAMPLE_RATE
    from engine.runtime import StreamConfig, StreamEngine, WindowModel
    from engine.stats import StatusLine, StreamStats

    check_args(args)
    import cv2

    # OpenCV (the photo avatar's warp, the yuv420p conversion of every frame) runs on its calling thread only,
    # process-wide: the player draws on the one core it is budgeted (a 1280x720 photo frame in ~4.5 ms) and leaves
    # the other cores to the model (--threads), the tracker and the encoders, instead of each call fanning out
    # over all of them and making the render's time depend on their load
    cv2.setNumThreads(1)
    size, background = parse_size(args.size, args), parse_background(args.background)
    output = parse_output(args.output, args.camera_device) if args.output or args.room is None else None
    realtime = args.audio_device is not None or args.room is not None or args.realtime
    realtime = realtime or (output is not None and output.live)  # a camera is fed in real time (never --fast)
    check_hop(args)
    avatar = open_avatar(args, size, background)
    backend = source = tracker = room = local_room = params = control = None
    try:
        backend = open_backend(args)
        stop.check()
        control = open_listener(args, backend.model)  # before a room is joined or the input is opened
        local_room = start_local_room(args)
        room = open_room(args, size, stop, control)
        source = room.source if room is not None else open_source(args, realtime)
        stop.check()
        tracker = open_tracker(args, source, realtime)
        stop.check()
        if args.side_by_side and not source.has_video:
            log.warning("--side-by-side: the input has no video; the speaker panel stays grey")
        config = StreamConfig(
            hop=args.hop, seed=args.seed, temperature=args.temperature, realtime=realtime, size=size,
            avatar=args.avatar, background=background, side_by_side=args.side_by_side,
            live_sink=room is not None or (output is not None and output.live),
            playout_delay_s=None if args.playout_delay_ms is None else args.playout_delay_ms / 1000,
            probe=args.delay_probe,
        )  # fmt: skip
        try:
            # the engine feeds a file's audio track whenever the speaker has audio (in a room too: the player places
            # it on the live sink's clock)
            audio_rate = SAMPLE_RATE if source.has_audio else None
            make_sink = output.factory(audio_rate=audio_rate) if output is not None else None
            params = open_params_out(args)
            emitted = [room.publish if room is not None else None, params.write if params is not None else None]
            engine = StreamEngine(WindowModel.from_backend(backend), source, tracker=tracker, config=config,
                                  make_sink=room.sink_factory(make_sink) if room is not None else make_sink,
                                  on_emitted=each(emitted), avatar=avatar, listener_control=control)  # fmt: skip
        except ValueError as exc:
            raise UserError(str(exc)) from None
        status = StatusLine(enabled=not args.quiet)
        if room is not None:
            from engine.rooms.session import stats_summary

            room.set_stats_source(lambda: stats_summary(engine.stats))
        try:
            engine.run(on_status=lambda s: status.update(s.status()), stop=stop.requested)
        finally:
            status.update(engine.stats.status(), force=True)
            status.close()
        if params is not None:
            params.close()  # the .npz is written here (also after Ctrl-C): nothing emitted is lost
        report = run_report(args, backend, engine.stats, engine.hop, stop.requested.is_set(), control)
        if room is not None:
            report["room"] = room.counters()
        write_stats(args.stats, report)
        if not args.quiet:
            print(f"{report['media_s']:.1f} s of speaker in {report['wall_s']:.1f} s (rtf {report['rtf']:.2f}), "
                  f"{delay_text(report)}, {report['windows']['dropped']} windows dropped, "
                  f"{report['frames']['filled']} frames filled -> {args.output or 'the room'}",
                  file=sys.stderr)  # fmt: skip
        if room is not None and not stop.requested.is_set():  # only a stop ends a room run well
            raise UserError(str(room.error or f"room {room.url.room}: the connection to the room ended"))
        return stop.exit_status if stop.requested.is_set() else 0
    except KeyboardInterrupt:  # stopped while starting (joining, loading the tracker): the stats say so too
        if backend is not None:  # (a second Ctrl-C inside the model's loading leaves no backend to name)
            write_stats(args.stats, run_report(args, backend, StreamStats(mode="realtime" if realtime else "fast"),
                                               args.hop, interrupted=True, control=control))  # fmt: skip
        raise
    finally:
        for part in (params, source, tracker, backend, room, local_room, avatar):
            if part is not None:
                part.close()


def delay_text(report: dict[str, Any]) -> str:
    """The run's delay for the last line: live, the engine's part of what a viewer sees; a file, compute latency."""
    delay, latency = report["engine_delay_ms"], report["latency_ms"]
    if delay["frames"]:
        return f"delay p50 {delay['p50_ms']:.0f} ms"
    return "latency p95 -" if latency["p95_ms"] is None else f"latency p95 {latency['p95_ms']:.0f} ms"


def run_report(
    args: argparse.Namespace, backend: Any, stats: Any, hop: int | None, interrupted: bool, control: Any = None
) -> dict[str, Any]:
    """The --stats report: the run's engine.stats.StreamStats (its playout delay included), the model and settings
    it ran with, who listened (engine.listener.ListenerControl.report: the persona and expressiveness, and every
    change with the first frame it made; null for a model without personas), how it ended."""
    return stats.to_json() | {
        "model": str(args.model), "backend": backend.name, "steps": backend.steps, "sampler": backend.sampler_name,
        "hop": hop, "listener": control.report() if control is not None else None, "interrupted": interrupted,
    }  # fmt: skip


def open_params_out(args: argparse.Namespace) -> Any:
    """--params-out: the writer of the emitted listener frames (engine.params_out); None without it."""
    if args.params_out is None:
        return None
    from engine.params_out import open_params

    return open_params(args.params_out)


def each(targets: list[Callable[[Any], object] | None]) -> Callable[[Any], None] | None:
    """One callback that calls every target given, in order (None when none is)."""
    given = [t for t in targets if t is not None]
    if not given:
        return None

    def call(block: Any) -> None:
        for target in given:
            target(block)

    return call


def write_stats(path: Path | None, report: dict[str, Any]) -> None:
    """Write the --stats JSON file (nothing without --stats); its place was checked before the run."""
    if path is None:
        return
    try:
        path.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"--stats {path}: cannot write it ({exc.strerror})") from None


def start_local_room(args: argparse.Namespace) -> Any:
    """--room local: serve a built-in room on 127.0.0.1, point args.room at it and print its URL."""
    if args.room != LOCAL_ROOM:
        return None
    from engine.room_server.local import LocalRoom

    local = LocalRoom()
    try:
        args.room = local.start()
    except OSError as exc:
        raise UserError(f"--room local: {exc}") from None
    print(f"room ready: open {args.room} in a browser (camera and microphone), talk, and watch the avatar react",
          flush=True)  # fmt: skip
    return local


def open_room(args: argparse.Namespace, size: tuple[int, int], stop: StopSignals, control: Any = None) -> Any:
    """--room: join it (engine.rooms.session.RoomSession; `control`: who listens, which the pages may change);
    None without --room."""
    if args.room is None:
        return None
    from engine.rooms import RoomError, RoomURLError
    from engine.rooms.session import RoomSession

    try:
        room = RoomSession(args.room, size=size, controls=control)
        join_s = room.start(stop)
    except (RoomError, RoomURLError) as exc:
        raise UserError(str(exc)) from None
    log.info("joined %s in %.2f s", args.room, join_s)
    return room


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # `reactdiff-engine serve ...` is reactdiff-serve: many calls in one process
        from engine.serving.cli import main as serve

        return serve(argv[1:])
    with StopSignals(PROG) as stop:
        from engine.sources import SourceError
        from renderer.sinks import SinkError

        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
        try:
            if args.list_audio_devices:
                return list_devices()
            if args.list_personas:
                return list_personas(args)
            return stream(args, stop)
        except (UserError, SourceError, SinkError) as exc:
            message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return stop.exit_status


if __name__ == "__main__":
    sys.exit(main())
