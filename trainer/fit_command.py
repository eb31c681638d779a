"""`reactdiff-trainer fit`: train a ReactDiff model (both stages) on a corpus in the REACT layout.

reactdiff-trainer fit --config configs/tiny.toml --data data/synth --out runs/tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import torch
import torch.distributed as dist

from engine.interrupt import StopSignals
from trainer.config import load_config
from trainer.data import ReactDataset
from trainer.data.react import SpeakerFaces


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit",
        help="train a model: stage 1 autoencoder, stage 2 latent diffusion",
        description="Train ReactDiff on a corpus in the REACT layout (the synthetic corpus or the official data). "
        "Rerunning the same command resumes from OUT/checkpoint.pt. Launch with torchrun for several GPUs.",
    )
    p.add_argument("--config", required=True, type=Path, help="model tier TOML, e.g. configs/tiny.toml")
    p.add_argument("--data", required=True, type=Path, help="corpus root holding train/ and train.csv")
    p.add_argument("--out", required=True, type=Path, help="run folder for checkpoints, logs, plots and model.pt")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    p.add_argument("--mean-face", type=Path, default=None, help="58-float .npy subtracted from 3DMM arrays")
    p.add_argument(
        "--track-cache", type=Path, default=None,
        help="folder of tracked speaker faces (train.speaker_faces = \"tracked\"; default DATA/tracked_faces)",
    )  # fmt: skip
    p.add_argument("--face-model", type=Path, default=None, help="face_landmarker.task for tracking")
    p.add_argument("--track-workers", type=int, default=2, help="processes that track speaker videos (default 2)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Ctrl-C or SIGTERM: tracking keeps every video done, training saves a checkpoint at the current step."""
    with StopSignals("reactdiff-trainer fit") as stop:
        try:
            return fit(args, stop)
        except KeyboardInterrupt as exc:
            if stop.requested.is_set():
                raise stop.interrupted(str(exc)) from None  # exit 130, or 143 for SIGTERM
            raise


def fit(args: argparse.Namespace, stop: StopSignals) -> int:
    from trainer.cli import UserError
    from trainer.train import Trainer, init_distributed, prepare_arrays

    if args.track_workers < 1:
        raise UserError(f"--track-workers {args.track_workers}: give 1 or more")
    cfg = load_config(args.config)
    progress = not args.no_progress
    torch.set_num_threads(cfg.train.threads)
    device = args.device or init_distributed()
    dataset = ReactDataset(
        args.data, "train", mean_face=args.mean_face, speaker_faces=cast(SpeakerFaces, cfg.train.speaker_faces),
        track_cache=args.track_cache, face_model=args.face_model,
    )  # fmt: skip
    if dataset.tracked is not None:
        distributed = dist.is_available() and dist.is_initialized()
        leader = not distributed or dist.get_rank() == 0  # one process tracks; the others wait for its cache
        if leader and (tracked := dataset.track(workers=args.track_workers, progress=progress, stop=stop.requested)):
            print(f"tracked the speaker faces of {tracked} videos into {dataset.tracked.folder}")
        if distributed:
            dist.barrier()
    stop.check()
    arrays = prepare_arrays(dataset, progress=progress)
    stop.check()
    trainer = Trainer(cfg, arrays, args.out, device=device, progress=progress, stop=stop.requested)
    path = trainer.run()
    if trainer.rank == 0:
        print(f"trained {cfg.model.tier} model on {len(arrays)} samples: {path}")
    return 0
