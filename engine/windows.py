"""Sliding windows over the speaker's features, and the seam join of each window's new listener frames.

Time runs in 40 ms frames. Every `hop` frames a window of the last `window` speaker frames is cut; the model
returns `window` listener frames, of which the last `hop` are new. The frames already emitted in the window are
handed to the model (it continues them), and the new frames are shifted so that they join the last emitted
frame without a jump (`join_at_seam`). `generate_windows` runs a whole clip through the same loop that the live
engine runs frame by frame, so training-time evaluation measures what users get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from engine.features import audio_features
from renderer.face import FACE_DIM

S = TypeVar("S", bound=np.generic)
# (audio (B,W,57), face (B,W,58), present (B,2), known (B,W,83), known_mask (B,W), noise (B,N,C)
#  [, style=(B,D), expressiveness=(B,2)]) -> (B,W,83)
WindowFn = Callable[..., NDArray[np.float32]]

SILENCE_FEATURES = audio_features(np.zeros(640 * 2, dtype=np.float32))[-1]  # (57,) what silence looks like


@dataclass(frozen=True)
class WindowPlan:
    """Where one window sits in the stream: frames [end - window + 1, end]; frames > end - hop are new."""

    end: int
    window: int
    hop: int

    @property
    def start(self) -> int:
        return self.end - self.window + 1

    @property
    def first_new(self) -> int:
        return self.end - self.hop + 1


def check_hop(hop: int, window: int, name: str = "hop") -> None:
    """The one rule for the hop H (frames between windows) that the trainer's config, the model directory and the
    engine all apply: 1 <= H <= W - 1, since a window must also hold the last frame already emitted (the new frames
    are joined to its regenerated copy, `join_new_frames`). Raises ValueError naming `name`."""
    if not 0 < hop < window:
        raise ValueError(
            f"{name}={hop}: must be between 1 and {window - 1} frames (a window of {window} frames must also hold "
            "the last frame already emitted, to join the new ones to it)"
        )


def plan_windows(frames: int, window: int, hop: int) -> list[WindowPlan]:
    """Windows that cover frames 0..frames-1 with new frames every `hop` (`check_hop`); the last may be shorter."""
    check_hop(hop, window)
    ends = list(range(hop - 1, frames, hop))
    if not ends or ends[-1] != frames - 1:
        ends.append(frames - 1)
    plans, previous = [], -1
    for end in ends:
        plans.append(WindowPlan(end=end, window=window, hop=end - previous))
        previous = end
    return plans


def cut_window(sequence: NDArray[S], plan: WindowPlan, fill: NDArray[S]) -> NDArray[S]:
    """(B, T, D) -> (B, W, D): frames [plan.start, plan.end]; frames before 0 are `fill` (D,)."""
    b, _, d = sequence.shape
    out = np.broadcast_to(fill, (b, plan.window, d)).copy()
    lo = max(plan.start, 0)
    out[:, lo - plan.start :] = sequence[:, lo : plan.end + 1]
    return out


def window_present(present: NDArray[np.float32], face_found: NDArray[np.bool_] | None, plan: WindowPlan) -> NDArray:
    """(B, 2) [audio, face] presence of one window: the face counts as present only if it was found in at least
    one of the window's frames from frame 0 on (B, T) — the rule the live engine's SpeakerTimeline applies."""
    if face_found is None:
        return present
    found = face_found[:, max(plan.start, 0) : plan.end + 1].any(axis=1)
    out = present.copy()
    out[:, 1] *= found
    return out


def join_at_seam(new: NDArray[np.float32], previous: NDArray[np.float32], regenerated_previous: NDArray[np.float32],
                 decay_frames: float = 4.0) -> NDArray[np.float32]:  # fmt: skip
    """Shift `new` frames (B, H, D) so they continue from the last emitted frame `previous` (B, D).

    The window also regenerated that emitted frame (`regenerated_previous`); the difference between the two is
    added to the new frames and fades out with time constant `decay_frames`, so the seam has no step.
    """
    offset = previous - regenerated_previous  # (B, D)
    fade = np.exp(-np.arange(1, new.shape[1] + 1) / decay_frames)[None, :, None]
    return (new + offset[:, None, :] * fade).astype(np.float32)


def dependency_horizon(plan: WindowPlan, downsample: int, reach: int = 0) -> NDArray[np.int64]:
    """(W,) for each frame of the window, the newest speaker frame (absolute index) its listener frame can depend on.

    The model is causal at the grain of its latent tokens: latent token i covers window frames [i*r, (i+1)*r)
    (r = `downsample`) and sees speaker frames up to its last one (trainer.model.Denoiser), and the decoder makes
    frame f from tokens up to its own. `reach`: speaker frames the model may look ahead beyond that (its look-ahead
    compounds through every attention layer that applies it; 0 for a strictly causal model). Never past the
    window's end: later speaker input does not exist yet."""
    last = (np.arange(plan.window) // downsample + 1) * downsample - 1 + reach
    return np.minimum(plan.start + last, plan.end).astype(np.int64)


def window_noise(
    seed: int, k: int, batch: int, latent_shape: tuple[int, int], temperature: float = 1.0
) -> NDArray[np.float32]:
    """Initial latents (B, N, C) of window k: numpy's Generator seeded with (seed, k), the same on every backend,
    times `temperature` (check_temperature). The samplers are deterministic given these latents, so they are where
    a listener's variety comes from: another seed is another attentive listener; a temperature below 1 draws
    reactions nearer the model's most likely one, above 1 further from it."""
    noise = np.random.default_rng([seed, k]).standard_normal((batch, *latent_shape)).astype(np.float32)
    return noise if temperature == 1.0 else noise * np.float32(temperature)


TEMPERATURES = (0.0, 1.5)  # the range check_temperature allows


def check_temperature(temperature: float) -> float:
    """`temperature` if it is a finite number in TEMPERATURES, else ValueError saying so."""
    lo, hi = TEMPERATURES
    if not (np.isfinite(temperature) and lo <= temperature <= hi):
        raise ValueError(
            f"temperature {temperature}: use {lo:g} to {hi:g} (1: the model's own variety, 0: its most likely "
            f"reaction every time)"
        )
    return float(temperature)


def window_conditioning(
    emitted: NDArray[np.float32], plan: WindowPlan
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """known (B, W, D) and known_mask (B, W): the window's frames before `plan.first_new`, taken from `emitted`.

    `emitted` (B, T, D) holds the stream's listener frames from frame 0 on (frames from plan.first_new on are not
    read). Frames the model does not know (new ones, and those before the stream start) are 0 with mask 0.
    """
    b, _, d = emitted.shape
    lo = max(plan.start, 0)
    known_mask = np.zeros((b, plan.window), dtype=np.float32)
    known_mask[:, lo - plan.start : plan.first_new - plan.start] = 1.0
    known = np.zeros((b, plan.window, d), dtype=np.float32)
    known[:, lo - plan.start : plan.first_new - plan.start] = emitted[:, lo : plan.first_new]
    return known, known_mask


def join_new_frames(
    frames_w: NDArray[np.float32], plan: WindowPlan, previous: NDArray[np.float32] | None
) -> NDArray[np.float32]:
    """The window's new frames (B, plan.hop, D) out of its output (B, W, D), joined to the last emitted frame.

    `previous` (B, D) is the frame emitted just before plan.first_new (None at the stream start); it must lie in
    the window (plan.hop < W), since the window's own version of it sets the seam offset (`join_at_seam`).
    """
    new = frames_w[:, plan.first_new - plan.start :]
    if previous is None:
        return new.astype(np.float32, copy=False)
    return join_at_seam(new, previous, frames_w[:, plan.first_new - 1 - plan.start])


def generate_windows(
    run_window: WindowFn,
    audio: NDArray[np.float32],
    face: NDArray[np.float32],
    present: NDArray[np.float32],
    *,
    window: int,
    hop: int,
    latent_shape: tuple[int, int],
    listener_dim: int,
    seed: int,
    neutral_listener: NDArray[np.float32],
    face_found: NDArray[np.bool_] | None = None,
    style: NDArray[np.float32] | None = None,
    expressiveness: NDArray[np.float32] | None = None,
    temperature: float = 1.0,
) -> NDArray[np.float32]:
    """Listener frames (B, T, listener_dim) for speaker features audio (B,T,57) and faces (B,T,58), window by window.

    `face_found` (B, T): whether the tracker found the face in each frame; a window without one has its face
    marked absent (`window_present`), as live. None: `present` holds for every window. `style` (B,D) and
    `expressiveness` (B,2), when given, go to every window (who listens; engine.model_dir).

    Noise for window k comes from `window_noise(seed, k, temperature=temperature)`: the same seed gives the same
    frames on every backend. Before the first frame, speaker audio is silence and the face neutral; listener frames
    the model does not know are masked out (so `neutral_listener` only fixes the listener layout: its length must be
    listener_dim). The live engine (engine.stream) runs the same three steps per window: conditioning, noise, seam join.
    """
    if neutral_listener.shape != (listener_dim,):
        raise ValueError(f"neutral_listener has shape {neutral_listener.shape}, expected ({listener_dim},)")
    b, frames = audio.shape[:2]
    out = np.zeros((b, frames, listener_dim), dtype=np.float32)
    who = {k: v for k, v in (("style", style), ("expressiveness", expressiveness)) if v is not None}
    for k, plan in enumerate(plan_windows(frames, window, hop)):
        known, known_mask = window_conditioning(out, plan)
        frames_w = run_window(
            cut_window(audio, plan, SILENCE_FEATURES),
            cut_window(face, plan, np.zeros(FACE_DIM, np.float32)),
            window_present(present, face_found, plan),
            known,
            known_mask,
            window_noise(seed, k, b, latent_shape, check_temperature(temperature)),
            **who,
        )
        previous = out[:, plan.first_new - 1] if plan.first_new > 0 else None
        out[:, plan.first_new : plan.end + 1] = join_new_frames(frames_w, plan, previous)
    return out
