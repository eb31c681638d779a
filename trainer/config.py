"""Typed configuration for models and training, loaded from the small TOML files in configs/.

    from trainer.config import load_config
    cfg = load_config("configs/tiny.toml")   # RunConfig(model=ModelConfig(...), train=TrainConfig(...))

An unknown key, a missing section or a value of the wrong type is an error that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from engine.model_dir import MAX_STYLE_GUIDANCE
from engine.windows import check_hop


class ConfigError(ValueError):
    """A configuration file is malformed: unknown key, wrong type or an impossible value."""


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the ReactDiff network. Frames are 40 ms (25 fps)."""

    tier: str = "tiny"
    """Name of the tier (tiny, base, paper); recorded in exported manifests."""
    window: int = 48
    """W: frames per diffusion window (48 = 1.92 s). Must be a multiple of `downsample`."""
    hop: int = 3
    """H: default frames between windows when streaming (3 = 120 ms), 1 to window - 1; the engine may override it."""
    lookahead: int = 0
    """Speaker frames beyond a listener frame that the model may see (0 = strictly causal)."""
    d_model: int = 64
    """Width of the condition encoder and the denoiser."""
    heads: int = 4
    """Attention heads in every attention layer."""
    encoder_layers: int = 1
    """Multi-Modality Transformer blocks (intra-modality self-attention + inter-modality cross-attention)."""
    denoiser_layers: int = 2
    """Transformer blocks of the latent denoiser."""
    ae_width: int = 64
    """Width of the listener-motion autoencoder."""
    ae_layers: int = 1
    """Transformer layers in the autoencoder decoder."""
    latent_channels: int = 16
    """Channels per latent token."""
    downsample: int = 4
    """Frames per latent token (temporal downsampling of the autoencoder)."""
    train_timesteps: int = 1000
    """Discrete diffusion timesteps of the cosine schedule."""
    default_steps: int = 4
    """Sampler steps K used when streaming unless the user picks another."""
    default_sampler: str = "dpmpp2m"
    """Sampler used when streaming unless the user picks another: ddim or dpmpp2m."""
    guidance: float = 3.0
    """Classifier-free guidance scale at sampling (1.0 = no guidance)."""
    style_guidance: float = 1.0
    """How far a persona's style is pushed from the centre of the named personas' styles at sampling
    (engine.listener.guided_style): centre + g·(style - centre); 1.0 = the style as learned. Personas blur towards
    one another without it."""
    dropout: float = 0.1
    """Dropout inside transformer blocks during training."""
    style_frames: int = 100
    """R: frames of a listener's own motion that give their style (100 = 4 s)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for the two training stages."""

    batch_size: int = 64
    """Windows per optimisation step."""
    ae_steps: int = 600
    """Stage 1 (listener-motion autoencoder) optimisation steps."""
    diffusion_steps: int = 1200
    """Stage 2 (latent diffusion) optimisation steps."""
    ae_lr: float = 2e-3
    """AdamW learning rate of stage 1."""
    diffusion_lr: float = 1e-3
    """AdamW learning rate of stage 2."""
    weight_decay: float = 5e-4
    """AdamW weight decay (the paper's value)."""
    ema: float = 0.995
    """Exponential moving average decay of the stage-2 weights used for sampling."""
    noise_levels: int = 4
    """Noise levels trained per window and condition encoding (the encoder runs once for all of them)."""
    cond_drop: float = 0.1
    """Probability of dropping the whole speaker condition (classifier-free guidance)."""
    modality_drop: float = 0.15
    """Probability of dropping audio, and separately the speaker face (audio-only / face-only input)."""
    style_drop: float = 0.3
    """Probability of training a window without its listener's style (the null style: anyone in the corpus)."""
    expressiveness_drop: float = 0.3
    """Probability of training a window without its listener's motion energy (move as the style does)."""
    checkpoint_every: int = 200
    """Steps between checkpoints (a run resumes from the last one)."""
    seed: int = 0
    """Seed for initialisation, window sampling and noise."""
    speaker_faces: str = "fitted"
    """Speaker faces to train on: "fitted" (the corpus's 3D_FV arrays) or "tracked" (re-extracted from the speaker
    videos by the engine's own MediaPipe tracker, cached: what the live engine will see)."""
    threads: int = 2
    """CPU threads torch may use."""


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        m = self.model
        if m.window % m.downsample:
            raise ConfigError(f"model.window={m.window} must be a multiple of model.downsample={m.downsample}")
        try:
            check_hop(m.hop, m.window, name="model.hop")  # the engine's own rule
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if m.d_model % m.heads or m.ae_width % m.heads:
            raise ConfigError(f"model.d_model and model.ae_width must be multiples of model.heads={m.heads}")
        if self.train.speaker_faces not in ("fitted", "tracked"):
            raise ConfigError(f"train.speaker_faces={self.train.speaker_faces!r}: choose fitted or tracked")
        if not 0 < m.style_guidance <= MAX_STYLE_GUIDANCE:  # also false for NaN
            raise ConfigError(f"model.style_guidance={m.style_guidance}: use > 0 and <= {MAX_STYLE_GUIDANCE}")
        if m.default_sampler not in ("ddim", "dpmpp2m"):
            raise ConfigError(f"model.default_sampler={m.default_sampler!r}: choose ddim or dpmpp2m")


T = TypeVar("T")


def _build(cls: type[T], values: dict[str, Any], where: str) -> T:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
    for key, value in values.items():
        expected = hints[key]
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{where}.{key}: expected {expected.__name__}, got {value!r}")
    return cls(**values)


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts {"model": {...}, "train": {...}}, checking every key."""
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; valid sections: ['model', 'train']")
    return RunConfig(
        model=_build(ModelConfig, dict(data.get("model", {})), f"{source} [model]"),
        train=_build(TrainConfig, dict(data.get("train", {})), f"{source} [train]"),
    )


def load_config(path: str | Path) -> RunConfig:
    """Load a TOML config (see configs/*.toml)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; the shipped tiers are in configs/ (tiny, base, paper)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data, str(path))


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
