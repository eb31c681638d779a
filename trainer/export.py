"""`reactdiff-trainer export` and `build-engine`: a trained run -> model directory -> TensorRT plans.

    reactdiff-trainer export --run runs/base --out models/base
    reactdiff-trainer export --run runs/base --out models/base --fused 1,2,4,8
    reactdiff-trainer build-engine --model models/base --fp16

The model directory layout and graph contracts are documented in engine/model_dir.py. ONNX graphs are written by
torch's TorchScript-based exporter (`dynamo=False`): the dynamo exporter needs onnxscript, which this project does
not depend on, and the traced graphs are exact (checked against ONNX Runtime on every export). The torch backends
load `torch.export` programs (`torch.export.save`, `.pt2`): they need torch only, not the trainer's classes, and a
program moves to CUDA with `torch.export.passes.move_to_device_pass`.
"""

from __future__ import annotations

import argparse
import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from engine.diffusion import CosineSchedule, get_sampler, guided_x0
from engine.features import AUDIO_FEATURE_DIM
from engine.model_dir import (
    BATCH,
    FORMAT,
    FORMAT_VERSION,
    PAIR_BATCH,
    GraphSpec,
    ModelDir,
    TensorSpec,
    file_entry,
    fused_graph_name,
    load_model_dir,
    sha256_file,
    window_io,
    write_manifest,
)
from renderer.face import FACE_DIM, FPS
from trainer.config import ModelConfig, RunConfig, config_to_dict
from trainer.model import LISTENER_DIM, ReactDiff

OPSET = 17
MAX_BATCH = 16  # largest speaker batch the torch programs accept (TensorRT profiles have their own limit)
ONNX_TOLERANCE = 1e-3  # max |ONNX Runtime - torch| on the example inputs; larger fails the export


# --- the graphs ------------------------------------------------------------------------------------------


def only(model: ReactDiff, *parts: str) -> ReactDiff:
    """A shallow view of `model` that holds only the named submodules, so a saved program carries only their weights."""
    view = copy.copy(model)
    view._modules = {name: model._modules[name] for name in parts}
    return view


class ConditionPair(nn.Module):
    """(audio, face, present, known, known_mask) (B,...) -> memory (2B,2W,D): conditional rows, then unconditional."""

    def __init__(self, model: ReactDiff) -> None:
        super().__init__()
        self.model = only(model, "audio_norm", "face_norm", "listener_norm", "encoder")

    def forward(self, audio: Tensor, face: Tensor, present: Tensor, known: Tensor, known_mask: Tensor) -> Tensor:
        two = lambda a: torch.cat([a, a])  # noqa: E731
        both_present = torch.cat([present, torch.zeros_like(present)])  # unconditional branch: no speaker input
        return self.model.condition(two(audio), two(face), both_present, two(known), two(known_mask))


class GuidedDenoiser(nn.Module):
    """One sampler step: the denoiser on [x; x] against the CFG memory pair (the same listener on both rows),
    then guided x0 (B,N,C)."""

    def __init__(self, model: ReactDiff) -> None:
        super().__init__()
        self.model = only(model, "denoiser")

    def step(
        self, x: Tensor, t: Tensor, memory: Tensor, alpha: Any, sigma: Any, guidance: Any, style: Tensor,
        expressiveness: Tensor,
    ) -> Tensor:  # fmt: skip
        b = x.shape[0]
        two = lambda a: torch.cat([a, a])  # noqa: E731
        v = self.model.denoiser(two(x), two(t), memory, two(style), two(expressiveness))  # (2B, N, C)
        return guided_x0(v[:b], v[b:], x, alpha, sigma, guidance)

    def forward(
        self, x: Tensor, t: Tensor, memory: Tensor, coef: Tensor, style: Tensor, expressiveness: Tensor
    ) -> Tensor:
        """x (B,N,C), t (B,) float timestep index, memory (2B,2W,D), coef (3,) = [alpha, sigma, guidance],
        style (B,D), expressiveness (B,2)."""
        return self.step(x, t, memory, coef[0], coef[1], coef[2], style, expressiveness)


class StyleGraph(nn.Module):
    """A listener's reference frames (B,R,83), raw units -> their style (B,D)."""

    def __init__(self, model: ReactDiff) -> None:
        super().__init__()
        self.model = only(model, "listener_norm", "style")

    def forward(self, reference: Tensor) -> Tensor:
        return self.model.style_of(reference)


class Decoder(nn.Module):
    """Normalised latents (B,N,C) -> raw listener frames (B,W,83)."""

    def __init__(self, model: ReactDiff) -> None:
        super().__init__()
        self.model = only(model, "listener_norm", "latent_norm", "autoencoder")

    def forward(self, latents: Tensor) -> Tensor:
        return self.model.decode_listener(latents)


class FusedWindow(nn.Module):
    """A whole window in one graph: condition pair, K steps of `sampler` (unrolled), decoder."""

    def __init__(self, model: ReactDiff, sampler: str, steps: int) -> None:
        super().__init__()
        self.condition, self.denoise, self.decode = ConditionPair(model), GuidedDenoiser(model), Decoder(model)
        self.schedule = CosineSchedule(model.cfg.train_timesteps)
        self.sample, self.steps = get_sampler(sampler), steps

    def forward(
        self, audio: Tensor, face: Tensor, present: Tensor, known: Tensor, known_mask: Tensor, noise: Tensor,
        guidance: Tensor, style: Tensor, expressiveness: Tensor,
    ) -> Tensor:  # fmt: skip
        memory = self.condition(audio, face, present, known, known_mask)

        def predict_x0(x: Tensor, t: int) -> Tensor:
            alpha, sigma = self.schedule.alpha_sigma(t)
            t_batch = torch.full_like(x[:, 0, 0], float(t))  # (B,)
            return self.denoise.step(x, t_batch, memory, alpha, sigma, guidance[0], style, expressiveness)

        return self.decode(self.sample(predict_x0, noise, self.schedule, self.steps))


def graph_io(cfg: ModelConfig) -> dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]]:
    """Inputs and outputs of the three step graphs and the fused window graph: the engine's window contract
    (engine.model_dir.window_io), which the engine checks every model directory against."""
    n, c = cfg.window // cfg.downsample, cfg.latent_channels
    return window_io(cfg.window, (n, c), LISTENER_DIM, cfg.d_model, cfg.style_frames)


def example_inputs(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs of the declared shapes (masks and `present` as 0/1, `t` as timestep indices)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in specs:
        shape = s.concrete(batch)
        if s.name in ("present", "known_mask"):
            x = (torch.rand(shape, generator=g) > 0.3).float()
        elif s.name == "expressiveness":  # [log energy ratio, given]: some rows given, some not
            given = (torch.rand(shape[0], generator=g) > 0.3).float()
            x = torch.stack([torch.randn(shape[0], generator=g) * 0.5 * given, given], dim=1)
        elif s.name == "t":
            x = torch.randint(0, 1000, shape, generator=g).float()
        elif s.name == "coef":
            x = torch.tensor([0.6, 0.8, 1.5])
        elif s.name == "guidance":
            x = torch.tensor([1.5])
        else:
            x = torch.randn(shape, generator=g)
        out.append(x)
    return tuple(out)


# --- writing files -----------------------------------------------------------------------------------------


def _export_onnx(module: nn.Module, args: tuple[Tensor, ...], spec: GraphSpec, path: Path) -> None:
    names = [s.name for s in (*spec.inputs, *spec.outputs)]
    axes = {s.name: {0: s.shape[0]} for s in (*spec.inputs, *spec.outputs) if s.shape and isinstance(s.shape[0], str)}
    with warnings.catch_warnings():
        # Noise from the exporter itself: the notice that the TorchScript-based exporter is the legacy one, and
        # tracer notes about the fixed W (masks from torch.arange, unpacking k/v), which is fixed per model.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=names[: len(spec.inputs)], output_names=names[len(spec.inputs) :], dynamic_axes=axes,
        )  # fmt: skip


def _export_program(module: nn.Module, args: tuple[Tensor, ...], spec: GraphSpec, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dims = {BATCH: batch, PAIR_BATCH: 2 * batch}
    shapes = tuple({0: dims[s.shape[0]]} if s.shape and isinstance(s.shape[0], str) else None for s in spec.inputs)
    program = torch.export.export(module, args, dynamic_shapes=shapes)
    torch.export.save(program, str(path))


def _check_onnx(module: nn.Module, spec: GraphSpec, path: Path) -> float:
    """Max |ONNX Runtime - torch| on fresh inputs at a batch size other than the traced one."""
    import onnxruntime as ort

    args = example_inputs(spec.inputs, batch=3, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {s.name: a.numpy() for s, a in zip(spec.inputs, args, strict=True)})[0]
    with torch.no_grad():
        want = module(*args).numpy()
    error = float(np.abs(got - want).max())
    if not error <= ONNX_TOLERANCE:
        raise RuntimeError(f"{path}: ONNX Runtime differs from torch by {error:.3g} (> {ONNX_TOLERANCE}); export bug")
    return error


def _graph_modules(model: ReactDiff, fused: Sequence[tuple[str, int]]) -> dict[str, tuple[nn.Module, bool]]:
    """name -> (module, whether a torch program is written too). Fused graphs are for ONNX consumers only."""
    modules: dict[str, tuple[nn.Module, bool]] = {
        "condition": (ConditionPair(model), True),
        "denoiser": (GuidedDenoiser(model), True),
        "decoder": (Decoder(model), True),
        "style": (StyleGraph(model), True),
    }
    for sampler, steps in fused:
        modules[fused_graph_name(sampler, steps)] = (FusedWindow(model, sampler, steps), False)
    return modules


def _normalisation(model: ReactDiff) -> dict[str, dict[str, list[float]]]:
    norms = {"audio": model.audio_norm, "face": model.face_norm, "listener": model.listener_norm}
    norms["latent"] = model.latent_norm
    return {k: {"mean": n.mean.tolist(), "std": n.std.tolist()} for k, n in norms.items()}


def build_manifest(model: ReactDiff, state: dict[str, Any], model_id: str) -> dict[str, Any]:
    """Everything but `graphs` and `files` (added once the files are written)."""
    cfg = model.cfg
    schedule = CosineSchedule(cfg.train_timesteps)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "exported_with": {"torch": torch.__version__, "onnx_opset": OPSET, "onnx_exporter": "torchscript"},
        "tier": cfg.tier, "fps": FPS, "window": cfg.window, "hop": cfg.hop, "lookahead": cfg.lookahead,
        "latent_shape": [model.latent_tokens, cfg.latent_channels], "listener_dim": LISTENER_DIM,
        "d_model": cfg.d_model, "max_batch": MAX_BATCH,
        "normalisation": _normalisation(model),
        "schedule": {
            "kind": "cosine", "timesteps": schedule.timesteps, "offset": schedule.offset,
            "min_alpha_bar": schedule.min_alpha_bar, "alpha_sigma": schedule.alpha_sigma_table().tolist(),
        },
        "sampling": {"sampler": cfg.default_sampler, "steps": cfg.default_steps, "guidance": cfg.guidance},
        "data": state.get("data", {}),
        "config": state["config"]["model"],
        "style": {
            "reference_frames": cfg.style_frames, "null": model.style.null.tolist(),
            "energy_mean": float(model.energy_mean), "personas": state.get("personas", {}),
            "guidance": cfg.style_guidance,
        },
    }  # fmt: skip


def export_model(
    run: str | Path, out: str | Path, *, fused: Sequence[tuple[str, int]] = (), progress: bool = True
) -> ModelDir:
    """Export `run` (a run folder or its model.pt) into the model directory `out`; returns it loaded and verified.

    `fused` lists (sampler, K) pairs for which a fused window graph is written as well.
    """
    run, out = Path(run), Path(out)
    weights = run / "model.pt" if run.is_dir() else run
    from trainer.train import load_model

    model = load_model(weights)
    state = torch.load(weights, map_location="cpu", weights_only=False)
    out.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(model, state, sha256_file(weights))
    io = graph_io(model.cfg)
    graphs: dict[str, Any] = {}
    modules = _graph_modules(model, fused)
    for name, (module, with_program) in tqdm(modules.items(), desc="export", disable=not progress):
        spec = _write_graph(module.eval(), name, io, out, with_program, fused)
        graphs[name] = spec.to_json()
    manifest["graphs"] = graphs
    listed = [f for g in graphs.values() for f in (g["onnx"], g["torch"]) if f]
    manifest["files"] = {f: file_entry(out / f) for f in listed}
    write_manifest(out, manifest)
    return load_model_dir(out)


def _write_graph(
    module: nn.Module, name: str, io: dict[str, Any], out: Path, with_program: bool, fused: Sequence[tuple[str, int]]
) -> GraphSpec:
    steps_sampler = {fused_graph_name(s, k): (k, s) for s, k in fused}.get(name)
    inputs, outputs = io["window" if steps_sampler else name]
    spec = GraphSpec(
        name=name, onnx=f"{name}.onnx", torch=f"{name}.pt2" if with_program else None, inputs=inputs,
        outputs=outputs, steps=steps_sampler[0] if steps_sampler else None,
        sampler=steps_sampler[1] if steps_sampler else None,
    )  # fmt: skip
    args = example_inputs(inputs, batch=2)  # batch 2: a batch of 1 would be specialised away by the tracers
    with torch.no_grad():
        _export_onnx(module, args, spec, out / spec.onnx)
    _check_onnx(module, spec, out / spec.onnx)
    if spec.torch is not None:
        _export_program(module, args, spec, out / spec.torch)
    return spec


def save_untrained_model(cfg: RunConfig, path: str | Path, *, seed: int = 0, frames: int = 2000) -> Path:
    """Write a `model.pt` like a finished `fit` run, with random weights and normalisers fitted to random data.

    For benchmarks and tests: every parameter (the zero-initialised adaLN and null tokens too) gets a small random
    perturbation, so every path through the graphs carries signal.
    """
    torch.manual_seed(seed)
    model = ReactDiff(cfg.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(seed)
    model.audio_norm.fit(torch.randn(frames, AUDIO_FEATURE_DIM, generator=g) * 2 + 1)
    model.face_norm.fit(torch.randn(frames, FACE_DIM, generator=g) * 0.3)
    model.listener_norm.fit(torch.randn(frames, LISTENER_DIM, generator=g) * 0.3)
    model.latent_norm.fit(torch.randn(frames, cfg.model.latent_channels, generator=g) * 0.5)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"samples": 0, "frames": frames, "note": "untrained: random weights and random normaliser data"}
    torch.save({"config": config_to_dict(cfg), "state_dict": model.state_dict(), "data": summary}, path)
    return path


# --- the command line ----------------------------------------------------------------------------------------


def parse_fused(text: str, sampler: str | None) -> list[tuple[str, int]]:
    """ "4" or "1,2,4,8" or "ddim:4,dpmpp2m:8" -> [(sampler, K), ...]; a bare K uses `sampler`."""
    from trainer.cli import UserError

    pairs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, k = item.rpartition(":")
        name = name or sampler or ""
        try:
            get_sampler(name)
            steps = int(k)
        except ValueError as exc:
            raise UserError(f"--fused {text!r}: bad item {item!r} ({exc}); write e.g. 4 or dpmpp2m:4,ddim:8") from None
        pairs.append((name, steps))
    return pairs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a model directory (manifest, ONNX graphs, torch programs) from a trained run",
        description="Export a trained run into a model directory that every engine backend loads.",
    )
    p.add_argument("--run", required=True, type=Path, help="run folder (or its model.pt) written by `fit`")
    p.add_argument("--out", required=True, type=Path, help="model directory to write (created if missing)")
    p.add_argument(
        "--fused", default="default",
        help="fused window graphs to add: 'default' (the model's sampler and K), 'none', or K values / "
        "sampler:K pairs such as 1,2,4,8 or ddim:4",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=run_export)

    b = subparsers.add_parser(
        "build-engine",
        help="compile TensorRT plans from a model directory's ONNX graphs (needs TensorRT and a GPU)",
        description="Build TensorRT plans (dynamic batch, opt at the CFG batch of 2) with a timing cache; plans are "
        "cached under a key of GPU, compute capability, TensorRT version, shapes and ONNX hash.",
    )
    b.add_argument("--model", required=True, type=Path, help="model directory written by `export`")
    b.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    b.add_argument("--max-batch", type=int, default=4, help="largest speaker batch of the profiles (default 4)")
    b.add_argument("--workspace-mib", type=int, default=2048, help="builder workspace memory pool (MiB)")
    b.set_defaults(handler=run_build_engine)


def run_export(args: argparse.Namespace) -> int:
    from trainer.train import load_model

    weights = args.run / "model.pt" if args.run.is_dir() else args.run
    cfg = load_model(weights).cfg  # fails early with a clear message when the run has no model.pt
    choice = args.fused.strip().lower()
    fused = {"none": [], "default": [(cfg.default_sampler, cfg.default_steps)]}.get(choice)
    if fused is None:
        fused = parse_fused(args.fused, cfg.default_sampler)
    model_dir = export_model(weights, args.out, fused=fused, progress=not args.no_progress)
    total = sum(e["bytes"] for e in model_dir.manifest["files"].values())
    print(f"exported {cfg.tier} model to {model_dir.path}: {len(model_dir.graphs)} graphs, {total / 1e6:.1f} MB")
    return 0


def run_build_engine(args: argparse.Namespace) -> int:
    from trainer.cli import UserError
    from trainer.tensorrt_build import TensorRTUnavailable, build_plans

    if args.max_batch < 1 or args.workspace_mib < 1:
        raise UserError(f"--max-batch {args.max_batch}, --workspace-mib {args.workspace_mib}: give 1 or more")
    model_dir = load_model_dir(args.model)
    try:
        plans = build_plans(model_dir, fp16=args.fp16, max_batch=args.max_batch, workspace_mib=args.workspace_mib)
    except TensorRTUnavailable as exc:
        raise UserError(str(exc)) from None
    for name, path in plans.items():
        print(f"{name}: {path}")
    return 0
