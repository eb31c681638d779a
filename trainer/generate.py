"""Sampling listener reactions from a trained torch model, through the engine's own window loop and samplers.

frames = generate(model, audio_feats, speaker_face, steps=4, sampler="dpmpp2m", hop=8, seed=0)
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from engine.diffusion import Array, CosineSchedule, get_sampler, guided_x0
from engine.windows import WindowFn, generate_windows
from trainer.model import LISTENER_DIM, ReactDiff


def torch_window_fn(model: ReactDiff, *, steps: int, sampler: str, guidance: float) -> WindowFn:
    """A window function (see engine.windows) that runs `model` eagerly in torch on the CPU or its device."""
    schedule = CosineSchedule(model.cfg.train_timesteps)
    sample = get_sampler(sampler)
    device = next(model.parameters()).device

    @torch.no_grad()
    def run(
        audio: Array, face: Array, present: Array, known: Array, known_mask: Array, noise: Array,
        style: Array | None = None, expressiveness: Array | None = None,
    ) -> NDArray[np.float32]:  # fmt: skip
        b = audio.shape[0]
        to = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
        two = lambda a: torch.cat([to(a), to(a)])  # noqa: E731  (conditional branch, then unconditional)
        both_present = torch.cat([to(present), torch.zeros_like(to(present))])
        memory = model.condition(two(audio), two(face), both_present, two(known), two(known_mask))
        who = model.null_style(b) if style is None else to(style)
        how = torch.zeros(b, 2, device=device) if expressiveness is None else to(expressiveness)

        def predict_x0(x: torch.Tensor, t: int) -> torch.Tensor:
            alpha, sigma = schedule.alpha_sigma(t)
            v = model.denoiser(two(x), torch.full((2 * b,), t, device=device), memory, two(who), two(how))
            return guided_x0(v[:b], v[b:], x, alpha, sigma, guidance)

        latents = sample(predict_x0, to(noise), schedule, steps)
        return model.decode_listener(latents).cpu().numpy()

    return run


def generate(
    model: ReactDiff,
    audio: NDArray[np.float32],
    face: NDArray[np.float32],
    *,
    present: NDArray[np.float32] | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    hop: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    face_found: NDArray[np.bool_] | None = None,
    style: NDArray[np.float32] | None = None,
    expressiveness: NDArray[np.float32] | None = None,
    temperature: float = 1.0,
) -> NDArray[np.float32]:
    """Listener frames (B,T,83) for speaker audio features (B,T,57) and faces (B,T,58); defaults from the config.

    `face_found` (B,T): tracked faces' found flags; windows without a found face see the face as absent, as live.
    `style` (B,D) and `expressiveness` (B,2): who listens, in every window (None: no one in particular).
    `temperature` scales each window's initial latents (engine.windows.window_noise).
    """
    cfg = model.cfg
    was_training = model.training
    model.eval()
    fn = torch_window_fn(
        model,
        steps=steps or cfg.default_steps,
        sampler=sampler or cfg.default_sampler,
        guidance=cfg.guidance if guidance is None else guidance,
    )
    if present is None:
        present = np.ones((audio.shape[0], 2), dtype=np.float32)
    neutral = model.listener_norm.mean.detach().cpu().numpy()  # the average listener frame stands in before frame 0
    try:
        return generate_windows(
            fn,
            audio,
            face,
            present,
            window=cfg.window,
            hop=hop or cfg.hop,
            latent_shape=(model.latent_tokens, cfg.latent_channels),
            listener_dim=LISTENER_DIM,
            seed=seed,
            neutral_listener=neutral,
            face_found=face_found,
            style=style,
            expressiveness=expressiveness,
            temperature=temperature,
        )
    finally:
        model.train(was_training)
