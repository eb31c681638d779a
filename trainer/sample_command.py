"""`reactdiff-trainer sample`: generate a listener reaction to one speaker clip of a corpus and render it.

    reactdiff-trainer sample --run runs/tiny --data data/synth --out demo/listener_side_by_side.mp4

The speaker's video (when the corpus has one) is drawn on the left, the generated listener avatar on the right.
Generation runs through the same window loop as the live engine (hop H, K steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import numpy as np
import torch

from engine.features import audio_features
from renderer.face import FACE_DIM, clip_face
from trainer.data import ReactDataset
from trainer.data.react import SpeakerFaces


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="generate and render a listener reaction to one speaker clip",
        description="Generate a listener reaction for one sample of a corpus split with a trained model, save the "
        "(T, 83) frames as .npy beside the video, and render the avatar next to the speaker's video.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder of `fit` (holds model.pt)")
    p.add_argument("--data", required=True, type=Path, help="corpus root in the REACT layout")
    p.add_argument("--out", required=True, type=Path, help="output .mp4")
    p.add_argument("--split", default="test", help="split to take the speaker from (default: test)")
    p.add_argument("--index", type=int, default=0, help="sample index in the split (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="noise seed; another seed gives another reaction")
    p.add_argument("--steps", type=int, default=None, help="sampler steps K (default: the model's)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from renderer.video import write_face_video
    from trainer.cli import UserError
    from trainer.generate import generate
    from trainer.train import load_model, trained_speaker_faces

    if args.steps is not None and not 1 <= args.steps <= 50:
        raise UserError(f"--steps {args.steps}: use 1 to 50 sampler steps")
    torch.set_num_threads(2)
    model = load_model(args.run)
    faces = cast(SpeakerFaces, trained_speaker_faces(args.run))  # the speaker faces it was trained on
    dataset = ReactDataset(args.data, args.split, speaker_faces=faces)
    if dataset.tracked is not None:
        dataset.track(workers=1)
    if not 0 <= args.index < len(dataset):
        raise UserError(f"--index {args.index}: split {args.split!r} has samples 0..{len(dataset) - 1}")
    sample = dataset[args.index]
    feats = audio_features(sample.speaker_audio)
    t = min(len(feats), len(sample.speaker_face))
    frames = generate(model, feats[None, :t], sample.speaker_face[None, :t], steps=args.steps, seed=args.seed)[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out.with_suffix(".npy"), frames)
    speaker_video = dataset.video_frames(args.index, "speaker")[:t] if sample.speaker_video_path else None
    write_face_video(args.out, clip_face(frames[:, :FACE_DIM]), fps=25.0, size=(256, 256), side_by_side=speaker_video)
    print(f"wrote {args.out} ({t} frames) and {args.out.with_suffix('.npy')}")
    return 0
