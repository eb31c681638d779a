"""Who listens: a persona and an expressiveness, turned into the window inputs `style` (1,D) and
`expressiveness` (1,2) of a model that takes them (format version 2, engine.model_dir), and a holder that the
inference worker reads at the start of every window while a control (the command line, a room's page) changes it.

    choices = ListenerChoices.from_model(model, reference=Path("me.npy"))  # ListenerError: one line
    control = ListenerControl(choices, choices.choose("nodder", 1.5))
    engine = StreamEngine(..., listener_control=control)
    control.change(persona="thinker", by="room:3f2a")                       # applies from the next window

A persona is one of the model's named listeners (its manifest's `style.personas`), `anyone` (the null style: no
one in particular, the default), or a listener's own frames: a .npy of (T, 58) face frames (REACT's (T, 1, 58)
too) of at least R frames (the manifest's `reference_frames`, 100 = 4 s); the style graph reads each R-frame
stretch of it and the styles are averaged. Every persona but `anyone` is then pushed away from the centre of the
model's named personas (the mean of their styles, `style_centre`) by the model's style guidance g (the manifest's
`style.guidance`, `guided_style`): centre + g·(style - centre), as classifier-free guidance pushes a sample away
from the unconditional one. The learned styles of different listeners lie close together, and the model answers
them much alike; g > 1 keeps them apart. (The centre, not the null style: the null style is a learned vector
far from every encoded style, and pushing from it mostly pushes what all personas share.)

Expressiveness X scales how much the listener moves, relative to the persona itself: 1 moves as the persona does,
0.5 half as much, 2 twice as much. The model is asked for a motion energy (renderer.face.motion_energy) of
X * E, where E is the persona's own (the manifest's energy of a named one, a file's own motion energy, the
training listeners' mean for `anyone`): expressiveness = [log(X * E / energy_mean), 1]. X lies in
EXPRESSIVENESS_RANGE = [0.25, 2.5], a guard: far outside the energies of its training listeners the model would be
asked for motion it never learned. Without X the listener moves as its style does ([0, 0]).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.model_dir import ModelDir
from renderer.face import (
    EMOTION_DIM,
    FACE_DIM,
    FPS,
    FaceValueError,
    emotion_from_face,
    face_frames_shape,
    motion_energy,
    validate_face,
)

log = logging.getLogger(__name__)

ANYONE = "anyone"  # the null style: no one in particular
EXPRESSIVENESS_RANGE = (0.25, 2.5)
MAX_PERSONA_CHARS = 64  # a persona's name as a control message may carry it
STYLE_BATCH = 16  # reference stretches per style-graph call
MAX_RECORDED_CHANGES = 1000  # changes kept for --stats (a long call with a busy room makes many)


def style_centre(named: Sequence[ArrayLike], null: ArrayLike) -> NDArray[np.float32]:
    """(D,) the centre styles are pushed from: the mean of a model's named personas' styles (the null style if it
    names none)."""
    if not len(named):
        return np.asarray(null, np.float32)
    return np.mean([np.asarray(s, np.float64) for s in named], axis=0).astype(np.float32)


def guided_style(style: ArrayLike, centre: ArrayLike, guidance: float) -> NDArray[np.float32]:
    """A persona's style (..., D) pushed `guidance` times as far from `centre` (D,, `style_centre`):
    centre + g·(style - centre). The one place this is done: the engine's listeners, the serve API and the
    trainer's evaluation all call it."""
    if guidance == 1.0:  # the style as learned, to the bit
        return np.asarray(style, np.float32)
    centre = np.asarray(centre, np.float32)
    return (centre + guidance * (np.asarray(style, np.float32) - centre)).astype(np.float32)


class ListenerError(ValueError):
    """A persona or expressiveness that cannot be used; the message is one line that says how to fix it."""


@dataclass(frozen=True)
class ListenerStyle:
    """One persona the listener can take: its name, its style (D,) and its own motion energy (> 0)."""

    name: str
    style: NDArray[np.float32]
    energy: float


@dataclass(frozen=True)
class Listener:
    """Who listens: a persona and an expressiveness X (None: move as the persona's style does)."""

    persona: ListenerStyle
    expressiveness: float | None

    def window_inputs(self, energy_mean: float) -> dict[str, NDArray[np.float32]]:
        """style (1, D) and expressiveness (1, 2) for Backend.run_window (see the module docstring)."""
        x = self.expressiveness
        given = [0.0, 0.0] if x is None else [math.log(x * self.persona.energy / energy_mean), 1.0]
        return {"style": self.persona.style[None].astype(np.float32), "expressiveness": np.array([given], np.float32)}


def check_expressiveness(x: float, what: str = "expressiveness") -> float:
    """`x` if it lies in EXPRESSIVENESS_RANGE (finite); else ListenerError naming it `what`."""
    low, high = EXPRESSIVENESS_RANGE
    if not low <= x <= high:  # also false for NaN
        raise ListenerError(f"{what} {x}: use {low} to {high} (1 moves as the persona does)")
    return float(x)


def read_reference(path: Path, frames: int) -> NDArray[np.float32]:
    """(T, 58) face frames of a listener from a .npy file, T >= `frames`; ListenerError naming the file."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
        if not isinstance(array, np.ndarray):  # an .npz archive
            raise ValueError("it is not a single array (.npy)")
        faces = validate_face(np.asarray(array).reshape(face_frames_shape(array.shape, str(path))), str(path))
    except FaceValueError as exc:
        raise ListenerError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise ListenerError(f"{path}: cannot read a .npy array of face frames ({exc})") from None
    if len(faces) < frames:
        raise ListenerError(
            f"{path}: {len(faces)} frames ({len(faces) / FPS:.1f} s); a listener's style needs at least {frames} "
            f"frames ({frames / FPS:.0f} s at {FPS} fps) of their own motion"
        )
    return np.ascontiguousarray(faces, np.float32)


def reference_style(model: ModelDir, faces: NDArray[np.float32]) -> NDArray[np.float32]:
    """The style (D,) of (T, 58) face frames: the style graph (ONNX Runtime) on each R-frame stretch, averaged."""
    import onnxruntime as ort

    styles = model.style
    assert styles is not None
    r = styles.reference_frames
    n = len(faces) // r
    frames = np.concatenate([faces, emotion_from_face(faces)], axis=1)[: n * r].reshape(n, r, FACE_DIM + EMOTION_DIM)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    path = model.path_of(model.graphs["style"].onnx)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        out = [session.run(None, {"reference": frames[i : i + STYLE_BATCH]})[0] for i in range(0, n, STYLE_BATCH)]
    except Exception as exc:  # ONNX Runtime's own types: the file is damaged, not our call
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ListenerError(f"{path}: ONNX Runtime cannot run the style graph ({reason})") from None
    return np.concatenate(out).mean(axis=0).astype(np.float32)


class ListenerChoices:
    """The personas a model offers (`anyone`, its named ones, and a listener's own frames if given) and the
    checks every choice goes through, whoever makes it."""

    def __init__(self, personas: dict[str, ListenerStyle], energy_mean: float, reference_frames: int) -> None:
        self.personas, self.energy_mean, self.reference_frames = personas, energy_mean, reference_frames

    @classmethod
    def from_model(cls, model: ModelDir, reference: Path | None = None) -> ListenerChoices:
        """The model's choices, plus the style of the listener frames in `reference` (named after the file).
        ListenerError for a model without a style input (format version 1) or a reference it cannot use."""
        styles = model.style
        if styles is None:
            raise ListenerError(
                f"model {model.path} takes no persona or expressiveness (a model directory of format version 1); "
                "leave out --persona and --expressiveness, or use a model exported with personas"
            )
        null = np.asarray(styles.null, np.float32)
        centre = style_centre([p.style for p in styles.personas.values()], null)
        personas = {ANYONE: ListenerStyle(ANYONE, null, styles.energy_mean)}
        for name, p in sorted(styles.personas.items()):
            if name == ANYONE:
                log.warning("model %s names a persona %r: that name means the null style here", model.path, ANYONE)
                continue
            personas[name] = ListenerStyle(name, guided_style(p.style, centre, styles.guidance), p.energy)
        if reference is not None:
            faces = read_reference(reference, styles.reference_frames)
            energy = motion_energy(faces)
            if not energy > 0:
                raise ListenerError(f"{reference}: the face never moves; a listener's style needs their own motion")
            style = guided_style(reference_style(model, faces), centre, styles.guidance)
            personas[reference.name] = ListenerStyle(reference.name, style, energy)
        return cls(personas, styles.energy_mean, styles.reference_frames)

    @property
    def names(self) -> list[str]:
        """Every persona's name: `anyone` first, then the model's (sorted), then a reference file's."""
        return list(self.personas)

    def choose(self, persona: str, expressiveness: float | None) -> Listener:
        """The listener for a persona's name and X (None: as the style moves); ListenerError for an unknown name
        (listing the names) or an X out of range."""
        style = self.personas.get(persona)
        if style is None:
            shown = persona if len(persona) <= MAX_PERSONA_CHARS else persona[:MAX_PERSONA_CHARS] + "…"
            raise ListenerError(f"unknown persona {shown!r}; this model's personas: {', '.join(self.names)}")
        return Listener(style, None if expressiveness is None else check_expressiveness(expressiveness))


@dataclass(frozen=True)
class ListenerChange:
    """A listener accepted by the holder: who asked (`start`, `room:<participant>`, ...) and, once a window used
    it, the first listener frame made with it."""

    listener: Listener
    by: str
    version: int
    frame: int | None = None

    def to_json(self) -> dict[str, Any]:
        t_s = None if self.frame is None else self.frame / FPS
        return {"persona": self.listener.persona.name, "expressiveness": self.listener.expressiveness,
                "by": self.by, "frame": self.frame, "t_s": t_s}  # fmt: skip


class ListenerControl:
    """The listener of a running stream. Thread-safe: the inference worker takes `window_inputs` at the start of
    each window; `change` (any thread: a room's event loop) makes a new listener that the next window uses, and
    calls every `subscribe`d function with it (outside the lock, in the changing thread)."""

    def __init__(self, choices: ListenerChoices, initial: Listener, *, by: str = "start") -> None:
        self.choices = choices
        self._lock = threading.Lock()
        self._current = ListenerChange(initial, by, 0)
        self._inputs = initial.window_inputs(choices.energy_mean)
        self._applied = -1  # the newest version a window used
        self._changes: deque[ListenerChange] = deque([self._current], maxlen=MAX_RECORDED_CHANGES)
        self.changes_total = 1
        self._subscribers: list[Callable[[ListenerChange], object]] = []

    def current(self) -> ListenerChange:
        with self._lock:
            return self._current

    def change(
        self, *, persona: str | None = None, expressiveness: float | msgspec.UnsetType | None = msgspec.UNSET,
        by: str,
    ) -> ListenerChange:  # fmt: skip
        """A new listener from the next window on: `persona` (None: keep it) and `expressiveness` (UNSET: keep it;
        None: as the style moves). ListenerError (nothing changes) for an unknown persona or an X out of range."""
        with self._lock:
            now = self._current.listener
            x = now.expressiveness if isinstance(expressiveness, msgspec.UnsetType) else expressiveness
            listener = self.choices.choose(now.persona.name if persona is None else persona, x)
            self._current = ListenerChange(listener, by, self._current.version + 1)
            self._inputs = listener.window_inputs(self.choices.energy_mean)
            self._changes.append(self._current)
            self.changes_total += 1
            changed, subscribers = self._current, list(self._subscribers)
        log.info("listener: %s, expressiveness %s (by %s)", listener.persona.name, listener.expressiveness, by)
        for fn in subscribers:
            fn(changed)
        return changed

    def window_inputs(self, first_frame: int) -> dict[str, NDArray[np.float32]]:
        """style (1,D) and expressiveness (1,2) of the current listener, for a window whose first new listener frame
        is `first_frame` (recorded as where a listener was first used)."""
        with self._lock:
            if self._current.version != self._applied:
                self._applied = self._current.version
                self._mark_applied(first_frame)
            return self._inputs

    def _mark_applied(self, frame: int) -> None:
        for i, change in enumerate(self._changes):
            if change.version == self._applied:
                self._changes[i] = ListenerChange(change.listener, change.by, change.version, frame)
                if change is self._current:
                    self._current = self._changes[i]

    def subscribe(self, fn: Callable[[ListenerChange], object]) -> Callable[[], None]:
        """Call `fn(change)` after every change; returns a function that stops it."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def report(self) -> dict[str, Any]:
        """The --stats section: the listener at the end, and every change (the last MAX_RECORDED_CHANGES) with the
        first listener frame made with it (null: no window used it)."""
        with self._lock:
            changes = [c.to_json() for c in self._changes]
            now = self._current.to_json()
        return {"persona": now["persona"], "expressiveness": now["expressiveness"], "changes": changes,
                "changes_total": self.changes_total}  # fmt: skip
