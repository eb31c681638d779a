"""Milliseconds per window for every inference backend available here, against torch eager in the same run.

    .venv/bin/python benchmarks/window_latency.py  # base tier, untrained, exported to a temp dir
    .venv/bin/python benchmarks/window_latency.py --config configs/tiny.toml --config configs/base.toml
    .venv/bin/python benchmarks/window_latency.py --model models/base --run runs/base

Prints one JSON object: {"machine": ..., "results": [{"tier", "backend", "device", "graphs", "steps", "p50_ms",
"p95_ms", "ratio_to_torch_eager"}, ...]}. One window = one speaker (batch 1), so the classifier-free-guidance
batch of 2 runs inside. Fairness: every CPU runtime uses ONE intra-op thread (torch.set_num_threads(1), ONNX
Runtime intra_op_num_threads=1), each measurement starts with warm-up windows, and all inputs are contiguous
float32. Latency is per window, so it does not depend on whether the weights are trained: an untrained model
of the tier's sizes is exported when no --model is given. ONNX Runtime is measured twice: with the fused
K-step window graph ("fused") and with the step graphs driven from Python ("steps").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from engine.backends import BackendKind, available_backends, create_backend, window_shapes
from engine.model_dir import ModelDir, load_model_dir
from trainer.config import load_config
from trainer.export import export_model, save_untrained_model
from trainer.generate import torch_window_fn
from trainer.train import load_model

STEPS = (1, 2, 4, 8)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    info = Path("/proc/cpuinfo")
    if info.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}"


def window_inputs(model: ModelDir, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in window_shapes(model, 1).values()]
    arrays[2][:] = 1.0  # present: audio and face
    arrays[4][:] = (np.arange(model.window) < model.window - model.hop)[None]  # known_mask: all but the hop
    return arrays


def time_window(fn: Callable[..., Any], arrays: list[np.ndarray], runs: int, warmup: int) -> tuple[float, float]:
    """p50 and p95 milliseconds of `fn(*arrays)` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn(*arrays)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(*arrays)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def candidates(model: ModelDir, steps: int, sampler: str) -> list[tuple[str, BackendKind, dict[str, Any]]]:
    """(graphs label, kind, options) for every backend that can run here."""
    out = []
    for kind, reason in available_backends().items():
        if reason is not None:
            continue
        if kind is BackendKind.ONNXRUNTIME:
            if model.fused_graph(sampler, steps) is not None:
                out.append(("fused", kind, {"fused": True}))
            out.append(("steps", kind, {"fused": False}))
        else:
            out.append(("steps", kind, {}))
    return out


def measure(model: ModelDir, weights: Path | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    sampler, guidance = model.manifest["sampling"]["sampler"], model.manifest["sampling"]["guidance"]
    eager_model = load_model(weights) if weights is not None else None
    arrays, results = window_inputs(model), []
    for steps in tqdm(args.steps, desc=f"{model.manifest['tier']} K", disable=args.no_progress):
        eager_p50 = None
        if eager_model is not None:
            fn = torch_window_fn(eager_model, steps=steps, sampler=sampler, guidance=guidance)
            eager_p50, eager_p95 = time_window(fn, arrays, args.runs, args.warmup)
            results.append(row(model, "torch-eager", "cpu", "eager", steps, eager_p50, eager_p95, eager_p50))
        for graphs, kind, options in candidates(model, steps, sampler):
            try:
                backend = create_backend(kind, model, steps=steps, sampler=sampler, threads=1, **options)
            except Exception as exc:  # a backend that is present but cannot load this model: report, go on
                results.append(
                    {"tier": model.manifest["tier"], "backend": kind.value, "steps": steps, "error": str(exc)}
                )
                continue
            with backend:
                p50, p95 = time_window(backend.run_window, arrays, args.runs, args.warmup)
            results.append(row(model, kind.value, backend.device, graphs, steps, p50, p95, eager_p50))
    return results


def row(model: ModelDir, backend: str, device: str, graphs: str, steps: int, p50: float, p95: float,
        eager_p50: float | None) -> dict[str, Any]:  # fmt: skip
    ratio = None if eager_p50 is None else round(p50 / eager_p50, 3)
    return {"tier": model.manifest["tier"], "backend": backend, "device": device, "graphs": graphs, "steps": steps,
            "p50_ms": round(p50, 3), "p95_ms": round(p95, 3), "ratio_to_torch_eager": ratio}  # fmt: skip


def exported(config: Path, folder: Path, steps: list[int]) -> tuple[ModelDir, Path]:
    cfg = load_config(config)
    weights = save_untrained_model(cfg, folder / "run" / "model.pt")
    fused = [(cfg.model.default_sampler, k) for k in steps]
    return export_model(weights, folder / "model", fused=fused, progress=False), weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, action="append", help="tier TOML (repeatable); default configs/base.toml")
    p.add_argument("--model", type=Path, help="measure this model directory instead of exporting one")
    p.add_argument("--run", type=Path, help="with --model: its run folder/model.pt, for the torch eager reference")
    p.add_argument("--steps", type=lambda s: [int(k) for k in s.split(",")], default=list(STEPS), help="K values")
    p.add_argument("--runs", type=int, default=50, help="timed windows per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed windows before each measurement")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args()
    torch.set_num_threads(1)  # the same single intra-op thread as ONNX Runtime gets
    results: list[dict[str, Any]] = []
    if args.model is not None:
        results += measure(load_model_dir(args.model), args.run, args)
    else:
        for config in args.config or [Path("configs/base.toml")]:
            with tempfile.TemporaryDirectory() as tmp:
                model, weights = exported(config, Path(tmp), args.steps)
                results += measure(model, weights, args)
    print(json.dumps({"machine": machine(), "threads": 1, "results": results}, indent=1))


if __name__ == "__main__":
    main()
