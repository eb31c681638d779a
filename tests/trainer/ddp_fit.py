"""One rank of the two-process DDP test in test_train.py: `fit` stopped by Ctrl-C on rank 1 after diffusion step
13, then the same command again in the same processes (a resume), recording what the test compares across ranks.

    torchrun --nproc-per-node 2 -m tests.trainer.ddp_fit RECORD_DIR fit --config C --data D --out O --no-progress

RECORD_DIR/rank<R>.pt holds: the model's initial parameters (flat), the first values of every diffusion noise
draw (torch.randn_like, in order), the stream states at the stop and right after the resume, and both exit codes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from trainer import train
from trainer.cli import main

STOP_STEP = 13


def _streams(trainer: train.Trainer) -> dict[str, Any]:
    return {"numpy": trainer.rng.bit_generator.state, "torch": torch.get_rng_state()}


def run_rank(record_dir: Path, args: list[str]) -> int:
    rank = int(os.environ["RANK"])
    record: dict[str, Any] = {"noise": []}
    real_randn_like, real_update, real_run = torch.randn_like, train.Trainer._update_ema, train.Trainer.run

    def randn_like(*a: Any, **k: Any) -> torch.Tensor:
        eps = real_randn_like(*a, **k)
        record["noise"].append(eps.flatten()[:8].clone())
        return eps

    def update_then_stop(self: train.Trainer) -> None:
        real_update(self)
        if self.stage == "diffusion" and self.step == STOP_STEP:
            record["at_stop"] = _streams(self)
            if rank == 1:  # one rank asked: every rank stops after the same step
                os.kill(os.getpid(), signal.SIGINT)

    def recording_run(self: train.Trainer) -> Path:
        if "at_stop" in record:
            record["at_resume"] = _streams(self)
        else:
            record["initial_weights"] = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        return real_run(self)

    torch.randn_like = randn_like  # type: ignore[assignment]
    train.Trainer.run = recording_run  # type: ignore[method-assign]
    train.Trainer._update_ema = update_then_stop  # type: ignore[method-assign]
    record["stopped_status"] = main(args)
    record["noise_before_resume"] = len(record["noise"])
    train.Trainer._update_ema = real_update  # type: ignore[method-assign]
    record["resumed_status"] = status = main(args)
    torch.save(record, record_dir / f"rank{rank}.pt")
    return status


if __name__ == "__main__":
    sys.exit(run_rank(Path(sys.argv[1]), sys.argv[2:]))
