"""Two-stage ReactDiff training: stage 1 the listener-motion autoencoder, stage 2 the latent diffusion model.

    reactdiff-trainer fit --config configs/tiny.toml --data data/synth --out runs/tiny
    torchrun --nproc-per-node 8 -m trainer.cli fit --config configs/paper.toml --data REACT --out runs/paper

A run folder holds `checkpoint.pt` (resumable: rerun the same command), `log.jsonl` (one line per logged step),
`loss_<stage>.png`, `config.json` and, when done, `model.pt` (EMA weights, config, training-data summary).

Randomness under DDP: every rank builds the model from `train.seed` (the same initial weights), then draws
its windows, timesteps, noise and dropout masks from its own streams, seeded by (seed, rank). The checkpoint
keeps every rank's stream state (numpy, torch, and CUDA where used), so a resumed rank continues its own.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn
from tqdm import tqdm

from engine.diffusion import CosineSchedule
from engine.features import N_MELS, SUBFRAMES, audio_features
from engine.windows import SILENCE_FEATURES, WindowPlan, cut_window, window_present
from renderer.face import FACE_DIM, mirror_face, motion_energy
from trainer.config import ConfigError, RunConfig, config_to_dict
from trainer.data import ReactDataset
from trainer.model import LISTENER_DIM, ReactDiff

log = logging.getLogger(__name__)

MIN_ENERGY = 1e-5  # a listener who never moves still gets a finite expressiveness


@dataclass
class ClipArrays:
    """Per-sample arrays of one split, ready for window sampling (lists: clips may differ in length)."""

    audio: list[NDArray[np.float32]]  # (T, 57) speaker audio features
    face: list[NDArray[np.float32]]  # (T, 58) speaker face
    listener: list[NDArray[np.float32]]  # (T, 83) listener face + emotion
    speaker_emotion: list[NDArray[np.float32]]  # (T, 25)
    ids: list[tuple[str, str]]  # (speaker id, listener id)
    face_found: list[NDArray[np.bool_]] = field(default_factory=list)  # (T,) the speaker face was found
    energy: list[float] = field(default_factory=list)  # the listener's motion energy over the whole clip
    persona: list[str | None] = field(default_factory=list)  # the listener's persona, where the corpus names it

    def __len__(self) -> int:
        return len(self.audio)


def prepare_arrays(dataset: ReactDataset, *, progress: bool = True) -> ClipArrays:
    """Decode every sample once and compute its audio features with the engine's own function."""
    arrays = ClipArrays([], [], [], [], [])
    for i in tqdm(range(len(dataset)), desc=f"loading {dataset.split}", disable=not progress, leave=False):
        s = dataset[i]
        feats = audio_features(s.speaker_audio)
        t = min(len(feats), len(s.speaker_face), len(s.listener_face))
        arrays.audio.append(feats[:t])
        arrays.face.append(s.speaker_face[:t])
        arrays.listener.append(np.concatenate([s.listener_face[:t], s.listener_emotion[:t]], axis=-1))
        arrays.speaker_emotion.append(s.speaker_emotion[:t])
        arrays.ids.append((str(s.speaker_id), str(s.listener_id)))
        found = s.speaker_face_found if s.speaker_face_found is not None else np.ones(t, np.bool_)
        arrays.face_found.append(found[:t])
        arrays.energy.append(max(motion_energy(s.listener_face[:t]), MIN_ENERGY))
        arrays.persona.append(dataset.persona(i))
    return arrays


def reference_segment(listener: NDArray[np.float32], frames: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """(frames, 83) a random stretch of a listener clip (T, 83): their style reference (a clip shorter than
    `frames` is repeated)."""
    if len(listener) < frames:
        return np.resize(listener, (frames, listener.shape[1]))
    start = int(rng.integers(len(listener) - frames + 1))
    return listener[start : start + frames]


def sample_batch(
    arrays: ClipArrays, window: int, batch: int, rng: np.random.Generator, *, augment: bool = True,
    reference: int = 100,
) -> dict[str, NDArray[np.float32]]:  # fmt: skip
    """Random training windows; a window may start before frame 0 (the stream's first windows), padded as live.

    "face_found" (B,) is 1 where the speaker face was found in some frame of the window: the face counts as
    present only then, by the rule the live engine applies (engine.windows.window_present). "reference" (B,R,83)
    is another stretch of `reference` frames of the same listener clip (their style), "energy" (B,) that clip's
    motion energy.
    """
    audio = np.empty((batch, window, SILENCE_FEATURES.shape[0]), np.float32)
    face = np.empty((batch, window, FACE_DIM), np.float32)
    listener = np.empty((batch, window, LISTENER_DIM), np.float32)
    styles = np.empty((batch, reference, LISTENER_DIM), np.float32)
    energy = np.empty(batch, np.float32)
    valid = np.ones((batch, window), np.float32)
    face_found = np.ones((batch, 2), np.float32)
    for b in range(batch):
        i = int(rng.integers(len(arrays)))
        styles[b] = reference_segment(arrays.listener[i], reference, rng)
        energy[b] = arrays.energy[i] if arrays.energy else 1.0
        frames = len(arrays.audio[i])
        end = int(rng.integers(window // 4, frames)) if rng.random() < 0.1 else int(rng.integers(window - 1, frames))
        plan = WindowPlan(end=end, window=window, hop=1)
        audio[b] = cut_window(arrays.audio[i][None], plan, SILENCE_FEATURES)[0]
        face[b] = cut_window(arrays.face[i][None], plan, np.zeros(FACE_DIM, np.float32))[0]
        listener[b] = cut_window(arrays.listener[i][None], plan, arrays.listener[i][0])[0]
        valid[b, : max(0, -plan.start)] = 0.0
        face_found[b] = window_present(face_found[b : b + 1], arrays.face_found[i][None], plan)[0]
    if augment:
        gain = rng.uniform(-12.0, 12.0, size=(batch, 1, 1)) * np.log(10.0) / 10.0  # ±12 dB in natural-log power
        audio[..., : N_MELS + SUBFRAMES] += gain.astype(np.float32)
        flip = rng.random(batch) < 0.5
        face[flip] = mirror_face(face[flip])
        listener[flip, :, :FACE_DIM] = mirror_face(listener[flip, :, :FACE_DIM])
        styles[flip, :, :FACE_DIM] = mirror_face(styles[flip, :, :FACE_DIM])  # the same person, mirrored
    return {
        "audio": audio, "face": face, "listener": listener, "valid": valid, "face_found": face_found[:, 1],
        "reference": styles, "energy": energy,
    }  # fmt: skip


@torch.no_grad()
def persona_styles(
    model: ReactDiff, arrays: ClipArrays, rng: np.random.Generator, per_clip: int = 4
) -> dict[str, dict[str, Any]]:
    """name -> {"style": D floats, "energy": float} for every persona the training listeners are labelled with:
    the mean style of `per_clip` reference stretches of each of its listeners' clips, and their mean energy."""
    device = next(model.parameters()).device
    r = model.cfg.style_frames
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({p for p in arrays.persona if p is not None}):
        clips = [i for i, p in enumerate(arrays.persona) if p == name]
        stretches = np.stack([reference_segment(arrays.listener[i], r, rng) for i in clips for _ in range(per_clip)])
        style = model.style_of(torch.from_numpy(stretches).to(device)).mean(dim=0)
        energy = float(np.mean([arrays.energy[i] for i in clips]))
        out[name] = {"style": style.cpu().tolist(), "energy": energy}
    return out


def listener_recon_loss(pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Stage-1 loss on normalised frames: 10·MSE(face) + 10·L1(emotion) (the paper's weights) + velocity MSE."""
    face = F.mse_loss(pred[..., :FACE_DIM], target[..., :FACE_DIM])
    emotion = F.l1_loss(pred[..., FACE_DIM:], target[..., FACE_DIM:])
    velocity = F.mse_loss(pred.diff(dim=1), target.diff(dim=1))
    loss = 10.0 * face + 10.0 * emotion + 5.0 * velocity
    return loss, {"face_mse": face.item(), "emotion_l1": emotion.item(), "velocity_mse": velocity.item()}


class AutoencoderObjective(nn.Module):
    """Stage 1: reconstruct normalised listener windows through the latent bottleneck."""

    def __init__(self, model: ReactDiff) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        target = self.model.listener_norm(batch["listener"])
        pred = self.model.autoencoder.decode(self.model.autoencoder.encode(target))
        return listener_recon_loss(pred, target)


class DiffusionObjective(nn.Module):
    """Stage 2: v-prediction on latents of listener windows, conditioned on speaker and known listener frames."""

    alpha_sigma: Tensor  # (timesteps, 2)

    def __init__(self, model: ReactDiff, cfg: RunConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        table = torch.from_numpy(CosineSchedule(cfg.model.train_timesteps).alpha_sigma_table())
        self.register_buffer("alpha_sigma", table)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        m, tc = self.model, self.cfg.train
        b, w = batch["listener"].shape[:2]
        device = batch["listener"].device
        with torch.no_grad():
            z0 = m.encode_listener(batch["listener"])
        # Known listener prefix: as if the previous window ended `w - h` frames into this one.
        h = torch.randint(1, w + 1, (b, 1), device=device)
        known_mask = (torch.arange(w, device=device)[None] < (w - h)).float() * batch["valid"]
        present = (torch.rand(b, 2, device=device) > tc.modality_drop).float()
        present = present * (torch.rand(b, 1, device=device) > tc.cond_drop).float()
        present[:, 1] *= batch["face_found"]  # a window whose face the tracker never found: face absent, as live
        memory = m.condition(batch["audio"], batch["face"], present, batch["listener"], known_mask)
        style, expressiveness = self.listener_condition(batch, b, device)
        # Several noise levels per window share one condition encoding: more denoiser signal per encoder pass.
        r = tc.noise_levels
        z0, memory = z0.repeat(r, 1, 1), memory.repeat(r, 1, 1)
        style, expressiveness = style.repeat(r, 1), expressiveness.repeat(r, 1)
        t = torch.randint(0, self.cfg.model.train_timesteps, (b * r,), device=device)
        alpha, sigma = self.alpha_sigma[t].unbind(-1)
        alpha, sigma = alpha[:, None, None], sigma[:, None, None]
        eps = torch.randn_like(z0)
        v = m.denoiser(alpha * z0 + sigma * eps, t, memory, style, expressiveness)
        loss = F.mse_loss(v, alpha * eps - sigma * z0)
        return loss, {"v_mse": loss.item()}

    def listener_condition(self, batch: dict[str, Tensor], b: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """style (B,D) from the window's reference stretch (or the null style, p = style_drop), expressiveness
        (B,2): [log(clip energy / energy_mean), 1] (or [0, 0], p = expressiveness_drop)."""
        m, tc = self.model, self.cfg.train
        keep = torch.rand(b, 1, device=device) > tc.style_drop
        style = torch.where(keep, m.style_of(batch["reference"]), m.null_style(b))
        given = (torch.rand(b, 1, device=device) > tc.expressiveness_drop).float()
        level = torch.log(batch["energy"] / m.energy_mean)[:, None]
        return style, torch.cat([level * given, given], dim=1)


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of `rank`'s stream: unrelated across ranks (numpy's SeedSequence of (seed, rank, 1); the
    numpy windows use (seed, rank)), the same for the same seed and rank."""
    return int(np.random.SeedSequence([seed, rank, 1]).generate_state(1, np.uint64)[0] >> 1)  # 63 bits


class TrainingStopped(KeyboardInterrupt):
    """A stop was asked for (Ctrl-C, SIGTERM); the checkpoint holds every step done."""


class Trainer:
    """Runs both stages with checkpoints, EMA, logs and plots; resumes from `out/checkpoint.pt`.

    When `stop` is set (by Ctrl-C or SIGTERM through engine.interrupt.StopSignals), the step under way finishes, a
    checkpoint is saved and TrainingStopped is raised; under DDP every rank stops after the same step.
    """

    def __init__(
        self, cfg: RunConfig, train: ClipArrays, out: Path, *, device: str = "cpu", progress: bool = True,
        stop: threading.Event | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.data, self.out, self.progress, self.stop = cfg, train, out, progress, stop
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.device = torch.device(device)
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        self.model = ReactDiff(cfg.model).to(self.device)
        torch.manual_seed(rank_seed(cfg.train.seed, self.rank))  # from here on, this rank's own stream (CUDA too)
        self.rng = np.random.default_rng([cfg.train.seed, self.rank])
        self.ema: ReactDiff | None = None
        self.stage, self.step = "autoencoder", 0
        out.mkdir(parents=True, exist_ok=True)
        if not self._resume():
            self._fit_normalisers()
        self.optimizer = self._make_optimizer()
        if self._state is not None and "optimizer" in self._state:
            self.optimizer.load_state_dict(self._state["optimizer"])

    # --- setup ---------------------------------------------------------------------------------------

    def _fit_normalisers(self) -> None:
        m = self.model
        m.audio_norm.fit(torch.from_numpy(np.concatenate(self.data.audio)))
        m.face_norm.fit(torch.from_numpy(np.concatenate(self.data.face)))
        m.listener_norm.fit(torch.from_numpy(np.concatenate(self.data.listener)))
        m.energy_mean.fill_(float(np.mean(self.data.energy)))
        m.to(self.device)

    def _resume(self) -> bool:
        self._state: dict[str, Any] | None = None
        path = self.out / "checkpoint.pt"
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["config"] != config_to_dict(self.cfg):
            raise ConfigError(f"{path} was written with another config; use a new --out folder or the same config")
        self.model.load_state_dict(state["model"])
        if state.get("ema") is not None:
            self.ema = copy.deepcopy(self.model)
            self.ema.load_state_dict(state["ema"])
        self.stage, self.step, self._state = state["stage"], state["step"], state
        self._restore_rng(state.get("rng_states", []), path)
        log.info("resumed %s at stage %s step %d", path, self.stage, self.step)
        return True

    def _rng_state(self) -> dict[str, Any]:
        """This rank's stream states: numpy's windows, torch's CPU and (on a GPU) CUDA generators."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(), "cuda": cuda}

    def _gather_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's `_rng_state()`, indexed by rank (a collective: all ranks call it)."""
        if self.world == 1:
            return [self._rng_state()]
        states: list[Any] = [None] * self.world
        dist.all_gather_object(states, self._rng_state())
        return states

    def _restore_rng(self, states: list[dict[str, Any]], path: Path) -> None:
        """Continue this rank's streams from the checkpoint (a rank it has none for keeps its fresh seed)."""
        if self.rank >= len(states):
            log.warning("%s holds the random streams of %d rank(s), none for rank %d: it starts a fresh stream",
                        path, len(states), self.rank)  # fmt: skip
            return
        mine = states[self.rank]
        self.rng.bit_generator.state = mine["numpy"]
        torch.set_rng_state(mine["torch"].cpu())  # torch.load's map_location may have moved it
        if self.device.type == "cuda" and mine["cuda"] is not None:
            torch.cuda.set_rng_state(mine["cuda"].cpu(), self.device)

    def _stage_params(self) -> list[nn.Parameter]:
        m = self.model
        if self.stage == "autoencoder":
            return list(m.autoencoder.parameters())
        return [*m.encoder.parameters(), *m.style.parameters(), *m.denoiser.parameters()]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        tc = self.cfg.train
        lr = tc.ae_lr if self.stage == "autoencoder" else tc.diffusion_lr
        return torch.optim.AdamW(self._stage_params(), lr=lr, weight_decay=tc.weight_decay)

    def _objective(self) -> nn.Module:
        if self.stage == "autoencoder":
            objective: nn.Module = AutoencoderObjective(self.model)
        else:
            objective = DiffusionObjective(self.model, self.cfg).to(self.device)
        if self.world > 1:
            objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
        return objective

    # --- loop ----------------------------------------------------------------------------------------

    def _batches(self) -> Iterator[dict[str, Tensor]]:
        m = self.cfg.model
        while True:
            batch = sample_batch(self.data, m.window, self.cfg.train.batch_size, self.rng, reference=m.style_frames)
            yield {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()}

    def _lr_scale(self, total: int) -> float:
        warmup = max(1, total // 20)
        if self.step < warmup:
            return (self.step + 1) / warmup
        return 0.5 * (1 + np.cos(np.pi * (self.step - warmup) / max(1, total - warmup))) * 0.9 + 0.1

    def run(self) -> Path:
        if self.stage == "autoencoder":
            self._run_stage(self.cfg.train.ae_steps, self.cfg.train.ae_lr)
            self._finish_autoencoder()
        if self.stage == "diffusion":
            self._run_stage(self.cfg.train.diffusion_steps, self.cfg.train.diffusion_lr)
            self.stage = "done"
            self._save_checkpoint()
        return self._save_final()

    def _run_stage(self, total: int, lr: float) -> None:
        objective = self._objective()
        objective.train()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        batches = self._batches()
        bar = tqdm(total=total, initial=self.step, desc=self.stage, disable=not self.progress or self.rank != 0)
        while self.step < total:
            for group in self.optimizer.param_groups:
                group["lr"] = lr * self._lr_scale(total)
            with autocast:
                loss, metrics = objective(next(batches))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(self._stage_params(), 1.0)
            self.optimizer.step()
            self.step += 1
            self._update_ema()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if self.step % 10 == 0 or self.step == total:
                self._log({"loss": loss.item(), "grad_norm": float(grad_norm), **metrics})
            if self.step % self.cfg.train.checkpoint_every == 0:
                self._save_checkpoint()
            if self._stop_requested():
                bar.close()
                self._save_checkpoint()
                raise TrainingStopped(
                    f"saved {self.out / 'checkpoint.pt'} at {self.stage} step {self.step}; "
                    "run the same command again to resume from there"
                )
        bar.close()
        self._plot()

    def _stop_requested(self) -> bool:
        """Whether any rank was asked to stop (so all ranks leave the loop after the same step)."""
        asked = self.stop is not None and self.stop.is_set()
        if self.world == 1:
            return asked
        flag = torch.tensor([float(asked)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _finish_autoencoder(self) -> None:
        """Freeze the autoencoder, fit the latent normaliser on the training set, start stage 2."""
        m = self.model
        m.eval()
        latents = []
        with torch.no_grad():
            for _ in range(max(1, 4096 // self.cfg.train.batch_size)):
                batch = sample_batch(self.data, self.cfg.model.window, self.cfg.train.batch_size, self.rng)
                frames = torch.from_numpy(batch["listener"]).to(self.device)
                latents.append(m.autoencoder.encode(m.listener_norm(frames)))
        m.latent_norm.fit(torch.cat(latents), floor=1e-3)
        m.train()
        self.stage, self.step = "diffusion", 0
        self.ema = copy.deepcopy(self.model).eval()
        self.optimizer = self._make_optimizer()
        self._save_checkpoint()

    def _update_ema(self) -> None:
        if self.ema is None or self.stage != "diffusion":
            return
        decay = min(self.cfg.train.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.lerp_(p, 1.0 - decay)

    # --- files ---------------------------------------------------------------------------------------

    def _log(self, values: dict[str, float]) -> None:
        if self.rank != 0:
            return
        record = {"stage": self.stage, "step": self.step, "time": round(time.time(), 3), **values}
        with (self.out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def _plot(self) -> None:
        if self.rank != 0 or not (self.out / "log.jsonl").exists():
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = [json.loads(line) for line in (self.out / "log.jsonl").read_text().splitlines()]
        rows = [r for r in records if r["stage"] == self.stage]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
        ax.set(xlabel="step", ylabel="loss", title=f"{self.cfg.model.tier}: {self.stage}", yscale="log")
        fig.tight_layout()
        fig.savefig(self.out / f"loss_{self.stage}.png", dpi=100)
        plt.close(fig)

    def _save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint with every rank's stream states. A collective: every rank calls it, and it
        returns once the file is written (so no rank can read a stale one, on a resume in the same processes)."""
        rng_states = self._gather_rng_states()
        if self.rank == 0:
            state = {
                "config": config_to_dict(self.cfg),
                "stage": self.stage,
                "step": self.step,
                "model": self.model.state_dict(),
                "ema": None if self.ema is None else self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng_states": rng_states,
            }
            tmp = self.out / "checkpoint.pt.tmp"
            torch.save(state, tmp)
            tmp.replace(self.out / "checkpoint.pt")  # atomic: an interrupted save never corrupts the checkpoint
        if self.world > 1:  # NCCL's barrier is told the GPU, or it guesses one
            dist.barrier(device_ids=[torch.cuda.current_device()] if self.device.type == "cuda" else None)

    def _save_final(self) -> Path:
        path = self.out / "model.pt"
        if self.rank == 0:
            final = (self.ema or self.model).eval()
            summary = {
                "samples": len(self.data),
                "frames": int(sum(len(a) for a in self.data.audio)),
                "speaker_faces": self.cfg.train.speaker_faces,
            }
            personas = persona_styles(final, self.data, np.random.default_rng([self.cfg.train.seed, 7]))
            torch.save(
                {"config": config_to_dict(self.cfg), "state_dict": final.state_dict(), "data": summary,
                 "personas": personas},
                path,
            )  # fmt: skip
            (self.out / "config.json").write_text(json.dumps(config_to_dict(self.cfg), indent=2))
        return path


def load_model(path: str | Path, device: str = "cpu") -> ReactDiff:
    """Load `model.pt` (or a run folder containing it) written by `fit`."""
    from trainer.config import config_from_dict

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model here; run `reactdiff-trainer fit` first")
    state = torch.load(path, map_location=device, weights_only=False)
    cfg = config_from_dict(state["config"], str(path))
    model = ReactDiff(cfg.model).to(device)
    model.load_state_dict(state["state_dict"])
    return model.eval()


def load_personas(path: str | Path) -> dict[str, dict[str, Any]]:
    """The named personas `fit` stored in `path` (model.pt or its run folder): name -> {"style", "energy"}."""
    path = Path(path)
    state = torch.load(path / "model.pt" if path.is_dir() else path, map_location="cpu", weights_only=False)
    return dict(state.get("personas", {}))


def trained_speaker_faces(path: str | Path) -> str:
    """Which speaker faces the model in `path` (model.pt or its run folder) was trained on: fitted or tracked."""
    path = Path(path)
    state = torch.load(path / "model.pt" if path.is_dir() else path, map_location="cpu", weights_only=False)
    return str(state.get("data", {}).get("speaker_faces", "fitted"))


def init_distributed() -> str:
    """Join the torchrun process group when launched with WORLD_SIZE > 1; return the device to train on."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"
