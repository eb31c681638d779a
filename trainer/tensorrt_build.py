"""Compile a model directory's ONNX step graphs into TensorRT plans, staged and cached.

    reactdiff-trainer build-engine --model models/base [--fp16]

Stages per graph: ONNX (already in the model directory, hash-checked) -> plan. A stage is skipped when its file
exists under the same key (engine.backends.tensorrt_backend.plan_key: GPU, compute capability, TensorRT version,
ONNX sha256, precision, batch profile, shapes), so a stale plan is never reused: a new key means a new build.
Profiles: speaker batch 1..max_batch, optimised at 1 (the classifier-free-guidance batch of 2 inside the graphs).
One timing cache per model directory speeds up rebuilds. Written against the TensorRT 10 Python API.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from engine.backends.base import BackendUnavailable
from engine.backends.tensorrt_backend import (
    PLAN_FOLDER,
    TIMING_CACHE,
    gpu_identity,
    import_tensorrt,
    plan_key,
    plan_path,
)
from engine.backends.torch_backend import GRAPHS
from engine.model_dir import GraphSpec, ModelDir

log = logging.getLogger(__name__)


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing: the plans cannot be built on this machine."""


def _profile_shapes(spec: GraphSpec, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """input name -> (min, opt, max) shapes: batch 1, opt at 1 (CFG pair of 2 inside), max at max_batch."""
    return {s.name: (s.concrete(1), s.concrete(1), s.concrete(max_batch)) for s in spec.inputs}


def _build_plan(trt: Any, model: ModelDir, spec: GraphSpec, out: Path, *, fp16: bool, max_batch: int,
                workspace_mib: int, cache_path: Path) -> None:  # fmt: skip
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model.path_of(spec.onnx))):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{model.path_of(spec.onnx)}: TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in _profile_shapes(spec, max_batch).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build a plan for {spec.onnx}; run with -v for the builder log")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)  # atomic: an interrupted build never leaves a half plan under a valid key
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))


def build_plans(
    model: ModelDir, *, fp16: bool = False, max_batch: int = 4, workspace_mib: int = 2048
) -> dict[str, Path]:
    """Build (or reuse) the plans of the three step graphs; returns graph name -> plan path."""
    if max_batch < 1:
        raise ValueError(f"max_batch={max_batch}: must be at least 1")
    try:
        trt = import_tensorrt()
        gpu = gpu_identity()
    except BackendUnavailable as exc:
        raise TensorRTUnavailable(f"cannot build TensorRT plans here: {exc}") from None
    folder = model.path / PLAN_FOLDER
    folder.mkdir(exist_ok=True)
    plans = {}
    for graph in GRAPHS:
        key = plan_key(model, graph, trt_version=trt.__version__, gpu=gpu, fp16=fp16, max_batch=max_batch)
        path = plan_path(model, graph, key)
        if path.is_file():
            log.info("%s: plan %s is current, skipping", graph, path.name)
        else:
            log.info("%s: building %s (%s, TensorRT %s)", graph, path.name, gpu["gpu"], trt.__version__)
            _build_plan(trt, model, model.graphs[graph], path, fp16=fp16, max_batch=max_batch,
                        workspace_mib=workspace_mib, cache_path=folder / TIMING_CACHE)  # fmt: skip
        plans[graph] = path
    _record(folder, fp16=fp16, max_batch=max_batch)
    return plans


def _record(folder: Path, *, fp16: bool, max_batch: int) -> None:
    """Remember which (precision, max batch) builds exist, so the backend can recompute their keys."""
    index = folder / "plans.json"
    entries = json.loads(index.read_text()) if index.is_file() else []
    entry = {"fp16": fp16, "max_batch": max_batch}
    if entry not in entries:
        index.write_text(json.dumps([*entries, entry], indent=2) + "\n")
