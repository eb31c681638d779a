"""Loading a model directory: a damaged, truncated, edited or mixed-up directory is a ModelDirError naming the file.

The property tests damage a copy of the tiny exported model in thousands of ways. Loading sessions costs ~0.3 s,
so the 1,000-case properties stop at `load_model_dir`, the boundary where sizes and sha256 reject damaged bytes
before ONNX Runtime ever reads them; a few dozen cases go on through `create_backend` and run a window.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backends import create_backend
from engine.backends.base import window_shapes
from engine.model_dir import (
    FORMAT_VERSION,
    MANIFEST,
    REEXPORT,
    ModelDir,
    ModelDirError,
    file_entry,
    load_model_dir,
    write_manifest,
)
from tests.fuzzing import FUZZ, LARGE_REPR, damaged, within
from tests.resources import no_resource_growth

BASE_MODEL = Path(__file__).resolve().parents[2] / "engine" / "models" / "base"  # another model's files
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture
def model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model directory that a test may damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def read_manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def edit_manifest(root: Path, edit: Callable[[dict], object]) -> None:
    manifest = read_manifest(root)
    edit(manifest)
    write_manifest(root, manifest)


@contextmanager
def replaced(path: Path, data: bytes | None) -> Iterator[None]:
    """`path` holds `data` (None: is deleted) inside the block, and its own bytes again after it."""
    original = path.read_bytes()
    path.unlink()
    if data is not None:
        path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)


def check_usable(model: ModelDir) -> None:
    """Everything the engine and the backends read from a loaded directory, so a bad value cannot surface later."""
    assert model.window >= model.hop >= 1 and model.listener_dim == model.neutral_listener.shape[0]
    model.schedule.sampling_timesteps(int(model.manifest["sampling"]["steps"]))
    assert model.schedule.alpha_sigma(model.schedule.timesteps - 1)[1] > 0
    float(model.manifest["sampling"]["guidance"])
    shapes = window_shapes(model, 2)
    assert shapes["audio"][:2] == (2, model.window) and shapes["noise"] == (2, *model.latent_shape)
    for graph in model.graphs.values():
        assert model.path_of(graph.onnx).resolve().parent == model.path.resolve()


def check_load(root: Path, *, to_blame: Path | None = None) -> ModelDir | None:
    """Load `root`: a usable ModelDir, or None after a ModelDirError that names the file (`to_blame` if given,
    else something in `root`) and says how to fix it. Any other exception fails the test."""
    try:
        model = load_model_dir(root)
    except ModelDirError as exc:
        message = str(exc)
        assert str(to_blame or root) in message and REEXPORT in message, message
        assert "\n" not in message
        return None
    check_usable(model)
    return model


@st.composite
def edited_manifests(draw: st.DrawFn, manifest_bytes: bytes) -> bytes:
    """The manifest with one value somewhere inside it replaced by another JSON value, or deleted."""
    edited = json.loads(manifest_bytes)
    node = edited
    while True:
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child  # go deeper
            continue
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON_VALUES)
        return json.dumps(edited).encode()


def manifest_mutations(manifest_bytes: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(edited_manifests(manifest_bytes), damaged(manifest_bytes))


def listed_files(root: Path) -> list[str]:
    return sorted(read_manifest(root)["files"])


@functools.cache
def another_models_file(name: str) -> bytes:
    """The shipped model's file of that name (its decoder where it has none): another model's bytes."""
    path = BASE_MODEL / name
    return (path if path.is_file() else BASE_MODEL / "decoder.onnx").read_bytes()


@st.composite
def file_mutations(draw: st.DrawFn, originals: dict[str, bytes]) -> tuple[str, bytes | None]:
    """(a listed file, what it holds instead: damaged bytes, another graph's or another model's file, or None)."""
    name = draw(st.sampled_from(sorted(originals)))
    instead = st.sampled_from([data for other, data in originals.items() if other != name])
    return name, draw(st.one_of(damaged(originals[name]), instead, st.just(another_models_file(name)), st.none()))


# --- properties -----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings(LARGE_REPR)
def test_edited_or_damaged_manifests_are_a_model_dir_error_or_load_usable(model: Path) -> None:
    """1,000 manifests with a value replaced or deleted at any depth, or with their bytes damaged."""
    original = (model / MANIFEST).read_bytes()

    @FUZZ
    @given(manifest_mutations(original))
    def check(manifest: bytes) -> None:
        with replaced(model / MANIFEST, manifest):
            within(lambda: check_load(model))

    with no_resource_growth():
        check()


@pytest.mark.filterwarnings(LARGE_REPR)
def test_damaged_missing_or_swapped_graph_files_are_a_model_dir_error_naming_them(model: Path) -> None:
    """1,000 directories where one listed file is damaged, deleted, another graph's or another model's."""

    originals = {name: (model / name).read_bytes() for name in listed_files(model)}

    @FUZZ
    @given(file_mutations(originals))
    def check(mutation: tuple[str, bytes | None]) -> None:
        name, data = mutation

        def load() -> None:
            assert check_load(model, to_blame=model / name) is None or data == originals[name]  # flips undone

        with replaced(model / name, data):
            within(load)

    with no_resource_growth():
        check()


@pytest.mark.filterwarnings(LARGE_REPR)
def test_damaged_directories_through_create_backend_fail_cleanly_or_run(model: Path) -> None:
    """Fewer cases through the whole path a user takes: ONNX Runtime sessions built, one window run."""
    originals = {name: (model / name).read_bytes() for name in listed_files(model)}
    manifest = read_manifest(model)
    # Edits of what the engine does not read (the training data's summary) load: sessions are built and run.
    unread = JSON_VALUES.map(lambda value: json.dumps({**manifest, "data": {"note": value}}).encode())
    manifests = st.one_of(manifest_mutations((model / MANIFEST).read_bytes()), unread)
    mutations = st.one_of(st.tuples(st.just(MANIFEST), manifests), file_mutations(originals))

    def load_and_run() -> None:
        try:
            backend = create_backend("onnxruntime", model, threads=1)
        except ModelDirError as exc:
            assert REEXPORT in str(exc)
            return
        with backend:
            inputs = {k: np.zeros(shape, np.float32) for k, shape in window_shapes(backend.model, 1).items()}
            frames = backend.run_window(**inputs)
        assert frames.shape == (1, backend.model.window, backend.model.listener_dim)

    @settings(max_examples=30, deadline=None)
    @given(mutations)
    def check(mutation: tuple[str, bytes | None]) -> None:
        name, data = mutation
        with replaced(model / name, data):
            within(load_and_run)

    create_backend("onnxruntime", model, threads=1).close()  # ONNX Runtime's first use opens its cache database
    with no_resource_growth():  # and starts a thread, once a process: not something a run leaves behind
        check()


# --- single cases ---------------------------------------------------------------------------------------


def test_valid_directory_loads_with_shapes(tiny_model_dir: Path) -> None:
    model = load_model_dir(tiny_model_dir)
    x = model.graphs["denoiser"].inputs[0]
    assert (x.name, x.concrete(3)) == ("x", (3, *model.latent_shape))
    assert model.graphs["condition"].outputs[0].concrete(3)[0] == 6  # the guidance pair
    assert model.fused_graph("dpmpp2m", 4) is not None and model.fused_graph("ddim", 2) is None
    check_usable(model)


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="does not exist; re-export"):
        load_model_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match=r"manifest.json is missing"):
        load_model_dir(tmp_path / "empty")


def test_truncated_manifest(model: Path) -> None:
    text = (model / MANIFEST).read_text()
    (model / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(ModelDirError, match=r"manifest.json is not valid JSON.*re-export"):
        load_model_dir(model)


def test_deeply_nested_manifest_is_a_model_dir_error(model: Path) -> None:
    # json.loads raised RecursionError here, which reached the user as a traceback.
    (model / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelDirError, match=r"manifest.json is not valid JSON \(maximum recursion depth"):
        load_model_dir(model)


def test_nan_in_a_manifest_is_not_json(model: Path) -> None:
    # json.loads accepts NaN, and `int(manifest["window"])` failed later with a ValueError.
    text = (model / MANIFEST).read_text()
    (model / MANIFEST).write_text(text.replace('"window": 16', '"window": NaN'))
    with pytest.raises(ModelDirError, match=r"manifest.json is not valid JSON"):
        load_model_dir(model)


def test_other_format_version(model: Path) -> None:
    edit_manifest(model, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelDirError, match=f"format_version {FORMAT_VERSION + 1}, this engine reads version"):
        load_model_dir(model)


def test_edited_manifest_missing_key(model: Path) -> None:
    edit_manifest(model, lambda m: m.pop("schedule"))
    with pytest.raises(ModelDirError, match=r"missing required field `schedule`; the manifest was edited"):
        load_model_dir(model)


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda m: m.update(window="16"), r"Expected `int`, got `str` - at `\$.window`"),
        (lambda m: m.update(files=[]), r"Expected `object`, got `array` - at `\$.files`"),
        (lambda m: m["sampling"].pop("steps"), r"missing required field `steps` - at `\$.sampling`"),
        (lambda m: m["sampling"].update(sampler="euler"), r"Invalid enum value 'euler' - at `\$.sampling.sampler`"),
        (lambda m: m["schedule"].update(min_alpha_bar=2), r"Expected `float` < 1.0 - at `\$.schedule.min_alpha_bar`"),
        (lambda m: m["normalisation"]["listener"]["mean"].pop(), r"listener.mean holds 82 values, listener_dim is 83"),
        (lambda m: m.update(hop=17), r"hop=17: must be between 1 and 15"),
        (lambda m: m.update(hop=16), r"hop=16: must be between 1 and 15"),  # passed: the engine then refused it
        (lambda m: m["style"].update(guidance=0), r"Expected `float` > 0.0 - at `\$.style.guidance`"),
        (lambda m: m["style"].update(guidance=11), r"Expected `float` <= 10.0 - at `\$.style.guidance`"),
    ],
    ids=[
        "window-a-string",
        "files-a-list",
        "no-steps",
        "unknown-sampler",
        "alpha-bar-range",
        "short-mean",
        "hop-too-long",
        "hop-the-window",
        "no-style-guidance",
        "style-guidance-past-the-bound",
    ],
)
def test_values_of_the_wrong_type_or_range_are_caught_at_load(model: Path, edit, error) -> None:
    # Each of these loaded before and raised TypeError, KeyError or ValueError when the engine read the value.
    edit_manifest(model, edit)
    with pytest.raises(ModelDirError, match=rf"manifest.json: .*{error}"):
        load_model_dir(model)


def test_numbers_that_disagree_with_the_graphs_are_caught_at_load(model: Path) -> None:
    # The engine cuts windows of `window` frames; graphs declared for another length failed at the first window.
    edit_manifest(model, lambda m: m.update(window=20))
    with pytest.raises(ModelDirError, match=r"graph 'condition' declares audio \('batch', 16, 57\) where the engine "
                       r"needs audio \('batch', 20, 57\) \(window 20, .*mixes two models"):  # fmt: skip
        load_model_dir(model)
    edit_manifest(model, lambda m: m.update(window=16) or m["graphs"]["denoiser"]["inputs"][0].update(name="y"))
    with pytest.raises(ModelDirError, match=r"graph 'denoiser' declares y \('batch', 4, 8\) where the engine needs x"):
        load_model_dir(model)


def test_a_file_name_outside_the_directory_is_refused(model: Path) -> None:
    # Before, a manifest could make the engine read (and hand ONNX Runtime) any file on the disk.
    outside = model.parent / "outside.onnx"
    shutil.copy(model / "decoder.onnx", outside)

    def point_outside(m: dict) -> None:
        m["graphs"]["decoder"]["onnx"] = "../outside.onnx"
        m["files"]["../outside.onnx"] = file_entry(outside)

    edit_manifest(model, point_outside)
    with pytest.raises(ModelDirError, match=r"file name '\.\./outside\.onnx' is not inside the model directory"):
        load_model_dir(model)


def test_missing_graph_file(model: Path) -> None:
    (model / "denoiser.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"denoiser.onnx is missing from the model directory"):
        load_model_dir(model)


def test_graph_missing_from_manifest(model: Path) -> None:
    edit_manifest(model, lambda m: m["graphs"].pop("decoder"))
    with pytest.raises(ModelDirError, match=r"no graph\(s\) \['decoder'\]"):
        load_model_dir(model)


def test_truncated_file(model: Path) -> None:
    size = (model / "decoder.onnx").stat().st_size
    (model / "decoder.onnx").write_bytes(b"gr")
    with pytest.raises(ModelDirError, match=rf"decoder.onnx has 2 bytes, the manifest says {size}.*truncated"):
        load_model_dir(model)


def test_another_models_manifest_or_file(model: Path) -> None:
    shutil.copy(BASE_MODEL / MANIFEST, model / MANIFEST)  # the shipped model's manifest over the tiny one's files
    with pytest.raises(ModelDirError, match=r"condition.onnx has \d+ bytes, the manifest says \d+.*another model"):
        load_model_dir(model)


def test_same_size_other_bytes_fail_the_hash(model: Path) -> None:
    path = model / "condition.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)
    with pytest.raises(ModelDirError, match=r"condition.onnx: sha256 does not match.*another model"):
        load_model_dir(model)
    assert load_model_dir(model, verify_hashes=False).path == model  # sizes alone cannot tell


def test_wrong_hash_in_manifest(model: Path) -> None:
    edit_manifest(model, lambda m: m["files"]["denoiser.onnx"].update(sha256="0" * 64))
    with pytest.raises(ModelDirError, match=r"denoiser\.onnx: sha256 does not match"):
        load_model_dir(model)
