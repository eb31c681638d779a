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

Format version 2 adds who listens. The `denoiser` and window graphs take two more inputs: style (B,D), a
listener's style, and expressiveness (B,2) = [log(motion energy / the corpus mean), 1], or [0, 0] to move as the
style does. The `style` graph turns reference (B,R,83), R frames of a listener's own motion, into a style (B,D).
The manifest's `style` section holds R, the null style (no one in particular: D floats), the corpus's mean
motion energy and the named personas (a style and a mean motion energy each). Version 1 directories (no style)
still load; asking them for a persona is an error.

The manifest records shapes with the dynamic batch axis written as "batch" (or "2*batch"), the normalisation
statistics, the schedule, default sampling settings, a summary of the training data and sha256/size of each file.
The engine never imports trainer code: this module is the whole contract between the two.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

from engine.diffusion import CosineSchedule, SamplerKind
from engine.features import AUDIO_FEATURE_DIM
from engine.windows import check_hop
from renderer.face import FACE_DIM

log = logging.getLogger(__name__)

FORMAT = "reactdiff-model"
FORMAT_VERSION = 2  # 2: who listens (style, expressiveness, personas); 1 is still read
READ_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
BATCH = "batch"  # the dynamic axis of graph inputs/outputs, in manifest shapes
PAIR_BATCH = "2*batch"  # the classifier-free-guidance pair (conditional rows, then unconditional)
REQUIRED_GRAPHS = ("condition", "denoiser", "decoder")
MAX_STYLE_GUIDANCE = 10.0  # style guidance far past the learned styles asks for listeners the model never saw
MAX_MANIFEST_BYTES = 64 << 20  # a manifest is ~100 KB (its schedule table is most of it); bigger is not one
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
    def style(self) -> ListenerStyles | None:
        """Who can listen (format version 2), or None for a model without a style input."""
        section = self.manifest.get("style")
        return None if section is None else msgspec.convert(section, ListenerStyles)

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


def _unreadable(path: Path, exc: OSError) -> ModelDirError:
    return ModelDirError(f"{path} cannot be read ({exc.strerror or exc}); check its permissions or {REEXPORT}")


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} does not exist; {REEXPORT}")
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelDirError(f"{path} is missing: {directory} is not a model directory; {REEXPORT}")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ModelDirError(f"{path} holds more than {MAX_MANIFEST_BYTES >> 20} MiB: not a manifest; {REEXPORT}")
        manifest = msgspec.json.decode(path.read_bytes())
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ModelDirError(f"{path} is not valid JSON ({exc}); the file is damaged, {REEXPORT}") from None
    if not isinstance(manifest, dict):
        raise ModelDirError(f"{path} must hold a JSON object; {REEXPORT}")
    return manifest


def _check_version(manifest: dict[str, Any], path: Path) -> None:
    if manifest.get("format") != FORMAT:
        raise ModelDirError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT!r}; {REEXPORT}")
    version = manifest.get("format_version")
    if version not in READ_VERSIONS:
        raise ModelDirError(
            f"{path}: format_version {version!r}, this engine reads versions {list(READ_VERSIONS)}; "
            f"{REEXPORT} with the trainer that matches this engine"
        )
    if (version == 2) != ("style" in manifest):
        what = "without" if version == 2 else "with"
        raise ModelDirError(f"{path}: format_version {version} {what} a style section; {REEXPORT}")


# --- the manifest's schema (msgspec checks types and ranges; keys not named here are kept but not checked) ---

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Dim = PositiveInt | Literal["batch", "2*batch"]


class _Tensor(msgspec.Struct, frozen=True):
    name: str
    dtype: Literal["float32"]
    shape: tuple[Dim, ...]


class _Graph(msgspec.Struct, frozen=True):
    onnx: str
    inputs: tuple[_Tensor, ...]
    outputs: tuple[_Tensor, ...]
    torch: str | None = None
    steps: PositiveInt | None = None
    sampler: SamplerKind | None = None


class _File(msgspec.Struct, frozen=True):
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
    bytes: Annotated[int, msgspec.Meta(ge=0)]


class _Schedule(msgspec.Struct, frozen=True):
    timesteps: PositiveInt
    offset: Annotated[float, msgspec.Meta(ge=0)]
    min_alpha_bar: Annotated[float, msgspec.Meta(gt=0, lt=1)]


class _Sampling(msgspec.Struct, frozen=True):
    sampler: SamplerKind
    steps: Annotated[int, msgspec.Meta(ge=1, le=50)]
    guidance: float


class _Normaliser(msgspec.Struct, frozen=True):
    mean: tuple[float, ...]
    std: tuple[float, ...]


class _Normalisation(msgspec.Struct, frozen=True):
    listener: _Normaliser


Finite = Annotated[float, msgspec.Meta(ge=-1e6, le=1e6)]  # msgspec refuses NaN and inf for a bounded float
Energy = Annotated[float, msgspec.Meta(gt=0, le=1e3)]


class Persona(msgspec.Struct, frozen=True):
    """A named listener: their style (D floats) and their mean motion energy."""

    style: tuple[Finite, ...]
    energy: Energy


class ListenerStyles(msgspec.Struct, frozen=True):
    """The manifest's `style` section (format version 2)."""

    reference_frames: PositiveInt
    """R: frames of a listener's motion the style graph reads."""
    null: tuple[Finite, ...]
    """The style of no one in particular."""
    energy_mean: Energy
    """The training listeners' mean motion energy: expressiveness 1 of the null style."""
    personas: dict[str, Persona]
    guidance: Annotated[float, msgspec.Meta(gt=0, le=MAX_STYLE_GUIDANCE)] = 1.0
    """Style guidance: how far every persona's style is pushed from the centre of the named ones
    (engine.listener.guided_style); absent in manifests written before it: 1, the styles as learned."""


class _Manifest(msgspec.Struct, frozen=True):
    """What the engine reads from a manifest, typed; `graphs` and `files` are checked further below."""

    model_id: str
    tier: str
    fps: PositiveInt
    window: PositiveInt
    hop: PositiveInt
    lookahead: Annotated[int, msgspec.Meta(ge=0)]
    latent_shape: tuple[PositiveInt, PositiveInt]
    listener_dim: PositiveInt
    d_model: PositiveInt
    normalisation: _Normalisation
    schedule: _Schedule
    sampling: _Sampling
    data: dict[str, Any]
    graphs: dict[str, _Graph]
    files: dict[str, _File]
    style: ListenerStyles | None = None


def _typed(manifest: dict[str, Any], path: Path) -> _Manifest:
    try:
        typed = msgspec.convert(manifest, _Manifest)
    except msgspec.ValidationError as exc:
        raise ModelDirError(f"{path}: {exc}; the manifest was edited or damaged, {REEXPORT}") from None
    try:
        check_hop(typed.hop, typed.window)  # the rule the trainer's config and the engine apply
    except ValueError as exc:
        raise ModelDirError(f"{path}: {exc}; {REEXPORT}") from None
    if len(typed.normalisation.listener.mean) != typed.listener_dim:
        raise ModelDirError(
            f"{path}: normalisation.listener.mean holds {len(typed.normalisation.listener.mean)} values, "
            f"listener_dim is {typed.listener_dim}; {REEXPORT}"
        )
    style = typed.style
    if style is not None:
        lengths = {"null": len(style.null)} | {f"personas.{k}": len(p.style) for k, p in style.personas.items()}
        wrong = {k: n for k, n in lengths.items() if n != typed.d_model}
        if wrong:
            raise ModelDirError(f"{path}: style {wrong} must hold d_model = {typed.d_model} values; {REEXPORT}")
    return typed


# --- graphs: the engine's window contract -------------------------------------------------------------


def window_io(
    window: int, latent_shape: tuple[int, int], listener_dim: int, d_model: int, reference_frames: int | None = None
) -> dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]]:
    """(inputs, outputs) the engine feeds and reads for each graph kind (see the module docstring);
    "window" is every fused window graph. `reference_frames` (R) for a model with a style input (version 2)."""
    w, (n, c) = window, latent_shape

    def spec(name: str, *shape: int | str) -> TensorSpec:
        return TensorSpec(name, "float32", shape)

    condition = (
        spec("audio", BATCH, w, AUDIO_FEATURE_DIM), spec("face", BATCH, w, FACE_DIM), spec("present", BATCH, 2),
        spec("known", BATCH, w, listener_dim), spec("known_mask", BATCH, w),
    )  # fmt: skip
    memory, frames = spec("memory", PAIR_BATCH, 2 * w, d_model), spec("frames", BATCH, w, listener_dim)
    style = spec("style", BATCH, d_model)
    who = () if reference_frames is None else (style, spec("expressiveness", BATCH, 2))
    io: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]] = {
        "condition": (condition, (memory,)),
        "denoiser": (
            (spec("x", BATCH, n, c), spec("t", BATCH), memory, spec("coef", 3), *who),
            (spec("x0", BATCH, n, c),),
        ),
        "decoder": ((spec("latents", BATCH, n, c),), (frames,)),
        "window": ((*condition, spec("noise", BATCH, n, c), spec("guidance", 1), *who), (frames,)),
    }
    if reference_frames is not None:
        io["style"] = ((spec("reference", BATCH, reference_frames, listener_dim),), (style,))
    return io


def _first_difference(declared: tuple[TensorSpec, ...], expected: tuple[TensorSpec, ...]) -> str | None:
    def show(spec: TensorSpec | None) -> str:
        return "nothing" if spec is None else f"{spec.name} {tuple(spec.shape)}"

    pairs = itertools.zip_longest(declared, expected)
    return next((f"{show(d)} where the engine needs {show(e)}" for d, e in pairs if d != e), None)


def _graph_spec(name: str, g: _Graph) -> GraphSpec:
    def tensors(entries: tuple[_Tensor, ...]) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(e.name, e.dtype, e.shape) for e in entries)

    sampler = None if g.sampler is None else g.sampler.value
    return GraphSpec(name, g.onnx, g.torch, tensors(g.inputs), tensors(g.outputs), g.steps, sampler)


def _parse_graphs(m: _Manifest, path: Path) -> dict[str, GraphSpec]:
    required = (*REQUIRED_GRAPHS, *(["style"] if m.style is not None else []))
    missing = [g for g in required if g not in m.graphs]
    if missing:
        raise ModelDirError(f"{path}: no graph(s) {missing} in the manifest; {REEXPORT}")
    reference = None if m.style is None else m.style.reference_frames
    expected = window_io(m.window, m.latent_shape, m.listener_dim, m.d_model, reference)
    graphs = {name: _graph_spec(name, g) for name, g in m.graphs.items()}
    for name, graph in graphs.items():
        kind = "window" if name.startswith("window_") else name
        if kind == "window" and (graph.sampler is None or name != fused_graph_name(graph.sampler, graph.steps or 0)):
            raise ModelDirError(f"{path}: fused graph {name!r} must name its sampler and steps (K); {REEXPORT}")
        if kind not in expected:
            continue
        inputs, outputs = expected[kind]
        difference = _first_difference(graph.inputs, inputs) or _first_difference(graph.outputs, outputs)
        if difference:
            raise ModelDirError(
                f"{path}: graph {name!r} declares {difference} (window {m.window}, latent_shape "
                f"{list(m.latent_shape)}, listener_dim {m.listener_dim}, d_model {m.d_model}); the manifest was "
                f"edited or mixes two models, {REEXPORT}"
            )
    return graphs


# --- files ----------------------------------------------------------------------------------------------


def _inside(directory: Path, name: str) -> Path:
    """`directory / name` for a plain relative file name; names that leave the directory are an error."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts or "\0" in name:
        raise ModelDirError(f"{directory / MANIFEST}: file name {name!r} is not inside the model directory; {REEXPORT}")
    return directory.joinpath(*parts)


def _check_files(directory: Path, m: _Manifest, graphs: dict[str, GraphSpec], verify: bool) -> None:
    named = {f for g in graphs.values() for f in (g.onnx, g.torch) if f is not None}
    unlisted = sorted(named - set(m.files))
    if unlisted:
        raise ModelDirError(f"{directory / MANIFEST}: graph file(s) {unlisted} have no sha256 entry; {REEXPORT}")
    for name, entry in m.files.items():
        path = _inside(directory, name)
        try:
            _check_file(path, entry, verify)
        except OSError as exc:
            raise _unreadable(path, exc) from None


def _check_file(path: Path, entry: _File, verify: bool) -> None:
    if not path.is_file():
        raise ModelDirError(f"{path} is missing from the model directory; copy the whole directory or {REEXPORT}")
    size = path.stat().st_size
    if size != entry.bytes:
        raise ModelDirError(
            f"{path} has {size} bytes, the manifest says {entry.bytes}: the file is truncated or from "
            f"another model; {REEXPORT}"
        )
    if verify and sha256_file(path) != entry.sha256:
        raise ModelDirError(
            f"{path}: sha256 does not match the manifest: the file is damaged or from another model; {REEXPORT}"
        )


def load_model_dir(directory: str | Path, *, verify_hashes: bool = True) -> ModelDir:
    """Read and check a model directory: manifest format, version and schema (types, ranges, the graphs' inputs
    and outputs against the engine's window contract), every listed file's size and sha256.

    Raises ModelDirError naming the file at fault and how to fix it. `verify_hashes=False` skips the sha256
    (sizes are still checked) for very large models on a trusted disk.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    _check_version(manifest, directory / MANIFEST)
    typed = _typed(manifest, directory / MANIFEST)
    graphs = _parse_graphs(typed, directory / MANIFEST)
    _check_files(directory, typed, graphs, verify_hashes)
    log.debug("loaded model directory %s (%s, model %s)", directory, manifest["tier"], manifest["model_id"][:12])
    return ModelDir(directory, manifest, graphs)
