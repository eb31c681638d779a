"""The ReactDiff network, made to stream: condition encoder, listener-motion autoencoder, style encoder, denoiser.

Bottom-up: attention and blocks, then the Multi-Modality Transformer (`ConditionEncoder`), the listener motion
autoencoder (`MotionAutoencoder`), the listener's `StyleEncoder`, the latent `Denoiser`, and `ReactDiff`, which
holds them and the normalisation statistics. Shapes: B batch, W window frames, N = W / downsample latent tokens,
C latent channels, D model width, R reference frames. A listener frame is 83 floats: the 58-float face then the
25 emotion values (renderer.face).

The parts are exported as separate graphs (condition encoder once per window, denoiser once per sampler step,
decoder once per window, style encoder once per reference), so every `forward` takes and returns plain tensors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.features import AUDIO_FEATURE_DIM
from renderer.face import EMOTION_DIM, FACE_DIM
from trainer.config import ModelConfig

LISTENER_DIM = FACE_DIM + EMOTION_DIM  # 83


def sinusoidal(positions: Tensor, dim: int) -> Tensor:
    """(..., ) positions -> (..., dim) sinusoidal encodings (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def causal_mask(queries: int, keys: int, frames_per_query: int, lookahead: int, device: torch.device) -> Tensor:
    """(queries, keys) bool, True where attention is allowed.

    Query i covers frames [i*fpq, (i+1)*fpq); it may see key frames up to its last frame + `lookahead`.
    """
    last = (torch.arange(queries, device=device) + 1) * frames_per_query - 1 + lookahead
    return torch.arange(keys, device=device)[None, :] <= last[:, None]


class Attention(nn.Module):
    """Multi-head attention: projections, scaled dot-product attention, output projection."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, h, n, d/h)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, MLP; optional adaLN modulation."""

    def __init__(self, dim: int, heads: int, dropout: float, *, cross: bool, modulated: bool = False) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.cross = Attention(dim, heads, dropout) if cross else None
        self.norm2 = nn.LayerNorm(dim) if cross else None
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        # adaLN: the timestep embedding scales and shifts the normalised input of each sub-layer.
        self.modulation = nn.Linear(dim, 2 * dim) if modulated else None
        if self.modulation is not None:
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        self_mask: Tensor | None = None,
        cross_mask: Tensor | None = None,
        emb: Tensor | None = None,
    ) -> Tensor:
        h = self.norm1(x)
        if self.modulation is not None and emb is not None:
            scale, shift = self.modulation(emb)[:, None].chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        x = x + self.attn(h, h, self_mask)
        if self.cross is not None and self.norm2 is not None and context is not None:
            x = x + self.cross(self.norm2(x), context, cross_mask)
        return x + self.mlp(self.norm3(x))


class ConditionEncoder(nn.Module):
    """Multi-Modality Transformer over one window of speaker audio and face, plus the listener frames already known.

    Intra-class: causal self-attention inside the audio tokens and inside the face tokens. Inter-class: causal
    cross-attention audio→face and face→audio. A missing modality (audio-only calls, face-only input, or the
    unconditional branch of classifier-free guidance) is replaced by a learned token per frame.
    Output: memory (B, 2W, D) = W fused speaker tokens followed by W known-listener tokens.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.audio_in = nn.Linear(AUDIO_FEATURE_DIM, d)
        self.face_in = nn.Linear(FACE_DIM, d)
        self.audio_null = nn.Parameter(torch.zeros(d))
        self.face_null = nn.Parameter(torch.zeros(d))
        self.audio_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.dropout, cross=True) for _ in range(cfg.encoder_layers)
        )
        self.face_blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.dropout, cross=True) for _ in range(cfg.encoder_layers)
        )
        self.fuse = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, d))
        self.known_in = nn.Linear(LISTENER_DIM, d)
        self.unknown = nn.Parameter(torch.zeros(d))
        self.known_out = nn.LayerNorm(d)

    def forward(self, audio: Tensor, face: Tensor, present: Tensor, known: Tensor, known_mask: Tensor) -> Tensor:
        """audio (B,W,57) and face (B,W,58) normalised; present (B,2) 1/0 for audio/face; known (B,W,83)
        normalised listener frames with known_mask (B,W) 1 where a frame was already emitted."""
        w = audio.shape[1]
        pos = sinusoidal(torch.arange(w, device=audio.device), self.cfg.d_model)[None]  # (1, W, D)
        a = torch.where(present[:, 0, None, None] > 0.5, self.audio_in(audio), self.audio_null) + pos
        f = torch.where(present[:, 1, None, None] > 0.5, self.face_in(face), self.face_null) + pos
        mask = causal_mask(w, w, 1, self.cfg.lookahead, audio.device)
        for audio_block, face_block in zip(self.audio_blocks, self.face_blocks, strict=True):
            a, f = audio_block(a, f, mask, mask), face_block(f, a, mask, mask)
        speaker = self.fuse(torch.cat([a, f], dim=-1))
        listener = torch.where(known_mask[..., None] > 0.5, self.known_in(known), self.unknown) + pos
        return torch.cat([speaker, self.known_out(listener)], dim=1)


class MotionAutoencoder(nn.Module):
    """Deterministic autoencoder of normalised listener motion (B,W,83) <-> latents (B,N,C), N = W / downsample."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, c, r = cfg.ae_width, cfg.latent_channels, cfg.downsample
        self.cfg = cfg
        self.encoder = nn.Sequential(
            nn.Linear(LISTENER_DIM, d),
            nn.GELU(),
            nn.Linear(d, d),
        )
        self.down = nn.Conv1d(d, d, kernel_size=r, stride=r)  # (B, d, W) -> (B, d, N)
        self.to_latent = nn.Linear(d, c)
        self.from_latent = nn.Linear(c, d)
        self.up = nn.ConvTranspose1d(d, d, kernel_size=r, stride=r)
        self.decoder = nn.ModuleList(Block(d, cfg.heads, 0.0, cross=False) for _ in range(cfg.ae_layers))
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, LISTENER_DIM))

    def encode(self, frames: Tensor) -> Tensor:
        h = self.encoder(frames).transpose(1, 2)  # (B, d, W)
        return self.to_latent(self.down(h).transpose(1, 2))  # (B, N, C)

    def decode(self, latents: Tensor) -> Tensor:
        h = self.up(self.from_latent(latents).transpose(1, 2)).transpose(1, 2)  # (B, W, d)
        pos = sinusoidal(torch.arange(h.shape[1], device=h.device), h.shape[-1])[None]
        h = h + pos
        mask = causal_mask(h.shape[1], h.shape[1], 1, 0, h.device)  # frame i never depends on later latents
        for block in self.decoder:
            h = block(h, self_mask=mask)
        return self.head(h)


class StyleEncoder(nn.Module):
    """A listener's style from a few seconds of their own frames: reference (B,R,83), normalised, -> style (B,D).

    Each frame and its change from the frame before go through an MLP; their mean and spread over time (what the
    listener's face holds and how much each part of it moves) are projected to D. The style of "no one in
    particular" is the learned `null` vector (a listener drawn from the whole corpus)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.frame = nn.Sequential(nn.Linear(2 * LISTENER_DIM, d), nn.GELU(), nn.Linear(d, d))
        self.out = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, d))
        self.null = nn.Parameter(torch.zeros(d))

    def forward(self, reference: Tensor) -> Tensor:
        change = torch.cat([torch.zeros_like(reference[:, :1]), reference[:, 1:] - reference[:, :-1]], dim=1)
        h = self.frame(torch.cat([reference, change], dim=-1))  # (B, R, D)
        spread = (h.var(dim=1, unbiased=False) + 1e-6).sqrt()
        return self.out(torch.cat([h.mean(dim=1), spread], dim=-1))


class Denoiser(nn.Module):
    """Transformer over noisy latent tokens: adaLN timestep conditioning, cross-attention to the encoder memory.

    Predicts v = alpha·eps - sigma·x0 (Salimans & Ho 2022). Latent token i attends to earlier latent tokens, to
    speaker frames up to the end of its own span (+ lookahead) and to every known listener frame, so no output
    frame depends on speaker input more than `lookahead` frames after it. Who listens also conditions every block
    through adaLN, added to the timestep embedding: the listener's style (B,D) (`StyleEncoder`) and how much they
    move, `expressiveness` (B,2) = [log of their motion energy over the corpus mean, 1], or [0, 0] for "as the
    style moves" (a learned null embedding).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.inp = nn.Linear(cfg.latent_channels, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.expressiveness = nn.Sequential(nn.Linear(1, d), nn.SiLU(), nn.Linear(d, d))
        self.expressiveness_null = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.heads, cfg.dropout, cross=True, modulated=True) for _ in range(cfg.denoiser_layers)
        )
        self.out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.latent_channels))

    def forward(self, x: Tensor, t: Tensor, memory: Tensor, style: Tensor, expressiveness: Tensor) -> Tensor:
        """x (B,N,C) noisy latents, t (B,) timestep indices, memory (B,2W,D), style (B,D), expressiveness (B,2)
        -> v (B,N,C)."""
        n, w = x.shape[1], memory.shape[1] // 2
        given = expressiveness[:, 1:] > 0.5
        how_much = torch.where(given, self.expressiveness(expressiveness[:, :1]), self.expressiveness_null)
        emb = self.time(sinusoidal(t, self.cfg.d_model)) + style + how_much
        pos = sinusoidal(torch.arange(n, device=x.device) * self.cfg.downsample, self.cfg.d_model)[None]
        h = self.inp(x) + pos
        speaker = causal_mask(n, w, self.cfg.downsample, self.cfg.lookahead, x.device)
        cross_mask = torch.cat([speaker, torch.ones_like(speaker)], dim=1)
        self_mask = causal_mask(n, n, 1, 0, x.device)
        for block in self.blocks:
            h = block(h, memory, self_mask, cross_mask, emb)
        return self.out(h)


class Normalizer(nn.Module):
    """Per-dimension mean/std of one kind of data, stored with the weights (a std floor keeps constants finite)."""

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, data: Tensor, floor: float = 1e-2) -> None:
        flat = data.reshape(-1, data.shape[-1]).double()
        self.mean.copy_(flat.mean(0).float())
        self.std.copy_(flat.std(0).clamp_min(floor).float())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


class ReactDiff(nn.Module):
    """The whole model: normalisers, condition encoder, listener-motion autoencoder, style encoder and latent
    denoiser. `energy_mean` is the training listeners' mean motion energy (trainer.behaviour.motion_energy over a
    whole clip): expressiveness is measured against it."""

    energy_mean: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_norm = Normalizer(AUDIO_FEATURE_DIM)
        self.face_norm = Normalizer(FACE_DIM)
        self.listener_norm = Normalizer(LISTENER_DIM)
        self.latent_norm = Normalizer(cfg.latent_channels)
        self.register_buffer("energy_mean", torch.ones(()))
        self.encoder = ConditionEncoder(cfg)
        self.autoencoder = MotionAutoencoder(cfg)
        self.style = StyleEncoder(cfg)
        self.denoiser = Denoiser(cfg)

    @property
    def latent_tokens(self) -> int:
        return self.cfg.window // self.cfg.downsample

    def condition(self, audio: Tensor, face: Tensor, present: Tensor, known: Tensor, known_mask: Tensor) -> Tensor:
        """Raw speaker features and raw known listener frames -> memory (B, 2W, D)."""
        known = self.listener_norm(known) * known_mask[..., None]
        return self.encoder(self.audio_norm(audio), self.face_norm(face), present, known, known_mask)

    def style_of(self, reference: Tensor) -> Tensor:
        """Raw reference listener frames (B,R,83) -> style (B,D)."""
        return self.style(self.listener_norm(reference))

    def null_style(self, batch: int) -> Tensor:
        """(B,D) the style of no one in particular."""
        return self.style.null.expand(batch, -1)

    def encode_listener(self, frames: Tensor) -> Tensor:
        """Raw listener frames (B,W,83) -> normalised latents (B,N,C)."""
        return self.latent_norm(self.autoencoder.encode(self.listener_norm(frames)))

    def decode_listener(self, latents: Tensor) -> Tensor:
        """Normalised latents (B,N,C) -> raw listener frames (B,W,83)."""
        return self.listener_norm.inverse(self.autoencoder.decode(self.latent_norm.inverse(latents)))
