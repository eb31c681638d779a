"""A model directory: what `reactdiff-trainer export` writes and every inference backend loads.

    from engine.model_dir import load_model_dir
    model = load_model_dir("models/base")        # checks the manifest, versions and every file's sha256
    model.path_of(model.graphs["condition"].onnx)

Layout: `manifest.json` plus, per graph, an ONNX file (ONNX Runtime, TensorRT) and a `torch.export` program
(`.pt2`, the torch backends). The graphs (all float32, axis 0 is the speaker batch B):

- `condition`: audio (B,W,57), face (B,W,58), present (B,2), known (B,W,83), known_mask (B,W) -> memory (2B,2W,D).
  It builds the classifier-free-guidance pair itself: rows [0,B) conditional, [B,2B) with `present` zeroed.
- `denoiser`: x (B,N,C), t (B,) timestep index as float, memory (2B,2W,D), coef (3,) = [alpha, sigma, guidance]
  -> guided x0 (B,N,C). One sampler step: the denoiser on the CFG pair, v -> x0 and the guidance, in one graph.
- `decoder`: latents (B,N,C) -> listener frames (B,W,83), raw units (normalisers inside).
- `window_<sampler>_k<K>` (optional, ONNX only): the fused window: condition, K sampler steps and the decoder;
  inputs as `condition` plus noise (B,N,C) and guidance (1,) -> frames (B,W,83).

The manifest records shapes with the dynamic batch axis written as "batch" (or "2*batch"), the normalisation
statistics, the schedule, default sampling settings, a summary of the training data and sha256/size of each file.
The engine never imports trainer code: this module is the whole contract between the two.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.diffusion import CosineSchedule

log = logging.getLogger(__name__)

FORMAT = "reactdiff-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BATCH = "batch"  # the dynamic axis of graph inputs/outputs, in manifest shapes
PAIR_BATCH = "2*batch"  # the classifier-free-guidance pair (conditional rows, then unconditional)
REQUIRED_KEYS = (
    "format", "format_version", "model_id", "tier", "fps", "window", "hop", "lookahead", "latent_shape",
    "listener_dim", "d_model", "normalisation", "schedule", "sampling", "data", "graphs", "files",
)  # fmt: skip
REQUIRED_GRAPHS = ("condition", "denoiser", "decoder")
REEXPORT = "re-export it with `reactdiff-trainer export --run RUN --out DIR`"


class ModelDirError(ValueError):
    """A model directory is missing, corrupted, truncated or mixed with another model's files."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, dtype ("float32") and shape (ints, "batch" or "2*batch")."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def concrete(self, batch: int) -> tuple[int, ...]:
        """The shape for a speaker batch of `batch`."""
        sizes = {BATCH: batch, PAIR_BATCH: 2 * batch}
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its files (relative to the directory) and I/O; fused graphs also name steps/sampler."""

    name: str
    onnx: str
    torch: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: int | None = None
    sampler: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "onnx": self.onnx,
            "torch": self.torch,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "steps": self.steps,
            "sampler": self.sampler,
        }


def fused_graph_name(sampler: str, steps: int) -> str:
    return f"window_{sampler}_k{steps}"


@dataclass(frozen=True)
class ModelDir:
    """A loaded, verified model directory."""

    path: Path
    manifest: dict[str, Any]
    graphs: dict[str, GraphSpec]

    def path_of(self, file: str) -> Path:
        return self.path / file

    @property
    def window(self) -> int:
        return int(self.manifest["window"])

    @property
    def hop(self) -> int:
        return int(self.manifest["hop"])

    @property
    def latent_shape(self) -> tuple[int, int]:
        n, c = self.manifest["latent_shape"]
        return int(n), int(c)

    @property
    def listener_dim(self) -> int:
        return int(self.manifest["listener_dim"])

    @property
    def schedule(self) -> CosineSchedule:
        s = self.manifest["schedule"]
        return CosineSchedule(int(s["timesteps"]), float(s["offset"]), float(s["min_alpha_bar"]))

    @property
    def neutral_listener(self) -> NDArray[np.float32]:
        """(83,) the average listener frame: what stands in for frames before the stream starts."""
        return np.asarray(self.manifest["normalisation"]["listener"]["mean"], dtype=np.float32)

    def fused_graph(self, sampler: str, steps: int) -> GraphSpec | None:
        """The fused window graph for this sampler and K, if the export wrote one."""
        return self.graphs.get(fused_graph_name(sampler, steps))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """{"sha256": ..., "bytes": ...} for the manifest's `files` table."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest.json` (sorted keys, indented) into `directory`."""
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} does not exist; {REEXPORT}")
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelDirError(f"{path} is missing: {directory} is not a model directory; {REEXPORT}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path} is not valid JSON ({exc}); the file is damaged, {REEXPORT}") from None
    if not isinstance(manifest, dict):
        raise ModelDirError(f"{path} must hold a JSON object; {REEXPORT}")
    return manifest


def _check_keys(manifest: dict[str, Any], path: Path) -> None:
    if manifest.get("format") != FORMAT:
        raise ModelDirError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}; {REEXPORT}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelDirError(
            f"{path}: format_version {version!r}, this engine reads version {FORMAT_VERSION}; "
            f"{REEXPORT} with the trainer that matches this engine"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ModelDirError(f"{path}: missing key(s) {missing}; the manifest was edited or truncated, {REEXPORT}")


def _parse_tensor(entry: dict[str, Any]) -> TensorSpec:
    return TensorSpec(str(entry["name"]), str(entry["dtype"]), tuple(entry["shape"]))


def _parse_graphs(manifest: dict[str, Any], path: Path) -> dict[str, GraphSpec]:
    graphs = {}
    try:
        for name, g in manifest["graphs"].items():
            graphs[name] = GraphSpec(
                name=name,
                onnx=str(g["onnx"]),
                torch=None if g.get("torch") is None else str(g["torch"]),
                inputs=tuple(_parse_tensor(e) for e in g["inputs"]),
                outputs=tuple(_parse_tensor(e) for e in g["outputs"]),
                steps=g.get("steps"),
                sampler=g.get("sampler"),
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelDirError(f"{path}: malformed `graphs` entry ({exc!r}); {REEXPORT}") from None
    missing = [g for g in REQUIRED_GRAPHS if g not in graphs]
    if missing:
        raise ModelDirError(f"{path}: no graph(s) {missing} in the manifest; {REEXPORT}")
    return graphs


def _check_files(directory: Path, manifest: dict[str, Any], graphs: dict[str, GraphSpec], verify: bool) -> None:
    files: dict[str, Any] = manifest["files"]
    named = {f for g in graphs.values() for f in (g.onnx, g.torch) if f is not None}
    unlisted = sorted(named - set(files))
    if unlisted:
        raise ModelDirError(f"{directory / MANIFEST}: graph file(s) {unlisted} have no sha256 entry; {REEXPORT}")
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            raise ModelDirError(f"{path} is missing from the model directory; copy the whole directory or {REEXPORT}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ModelDirError(
                f"{path} has {size} bytes, the manifest says {entry['bytes']}: the file is truncated or from "
                f"another model; {REEXPORT}"
            )
        if verify and sha256_file(path) != entry["sha256"]:
            raise ModelDirError(
                f"{path}: sha256 does not match the manifest: the file is damaged or from another model; {REEXPORT}"
            )


def load_model_dir(directory: str | Path, *, verify_hashes: bool = True) -> ModelDir:
    """Read and check a model directory: manifest format/version/keys, every listed file's size and sha256.

    Raises ModelDirError naming the file at fault and how to fix it. `verify_hashes=False` skips the sha256
    (sizes are still checked) for very large models on a trusted disk.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    _check_keys(manifest, directory / MANIFEST)
    graphs = _parse_graphs(manifest, directory / MANIFEST)
    _check_files(directory, manifest, graphs, verify_hashes)
    log.debug("loaded model directory %s (%s, model %s)", directory, manifest["tier"], manifest["model_id"][:12])
    return ModelDir(directory, manifest, graphs)
