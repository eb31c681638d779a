"""Loading a model directory: a damaged, truncated, edited or mixed-up directory is a ModelDirError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.model_dir import (
    FORMAT,
    FORMAT_VERSION,
    REQUIRED_KEYS,
    ModelDirError,
    file_entry,
    load_model_dir,
    write_manifest,
)

GRAPH_IO = {"inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4, 2]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["2*batch", 4, 2]}]}  # fmt: skip


def make_dir(root: Path, payload: bytes = b"graph-a") -> Path:
    """A minimal valid directory: three 'graphs' whose files hold `payload`, listed with their hashes."""
    root.mkdir(parents=True)
    graphs = {}
    for name in ("condition", "denoiser", "decoder"):
        (root / f"{name}.onnx").write_bytes(payload + name.encode())
        graphs[name] = {"onnx": f"{name}.onnx", "torch": None, **GRAPH_IO}
    manifest = {k: 0 for k in REQUIRED_KEYS}
    manifest.update(format=FORMAT, format_version=FORMAT_VERSION, model_id="ab" * 32, tier="tiny", graphs=graphs)
    manifest.update(sampling={"sampler": "ddim", "steps": 2, "guidance": 1.0}, window=4, latent_shape=[1, 2])
    manifest["files"] = {f"{g}.onnx": file_entry(root / f"{g}.onnx") for g in graphs}
    write_manifest(root, manifest)
    return root


def edit_manifest(root: Path, **changes: object) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(changes)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_valid_directory_loads_with_shapes(tmp_path):
    model = load_model_dir(make_dir(tmp_path / "m"))
    (x,) = model.graphs["denoiser"].inputs
    assert x.concrete(3) == (3, 4, 2) and model.graphs["denoiser"].outputs[0].concrete(3) == (6, 4, 2)
    assert model.fused_graph("ddim", 2) is None


def test_missing_directory_and_manifest(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist; re-export"):
        load_model_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match=r"manifest.json is missing"):
        load_model_dir(tmp_path / "empty")


def test_truncated_manifest(tmp_path):
    root = make_dir(tmp_path / "m")
    text = (root / "manifest.json").read_text()
    (root / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelDirError, match=r"manifest.json is not valid JSON.*re-export"):
        load_model_dir(root)


def test_other_format_version(tmp_path):
    root = make_dir(tmp_path / "m")
    edit_manifest(root, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelDirError, match=f"format_version {FORMAT_VERSION + 1}, this engine reads version"):
        load_model_dir(root)


def test_edited_manifest_missing_key(tmp_path):
    root = make_dir(tmp_path / "m")
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["schedule"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match=r"missing key\(s\) \['schedule'\]"):
        load_model_dir(root)


def test_missing_graph_file(tmp_path):
    root = make_dir(tmp_path / "m")
    (root / "denoiser.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"denoiser.onnx is missing from the model directory"):
        load_model_dir(root)


def test_graph_missing_from_manifest(tmp_path):
    root = make_dir(tmp_path / "m")
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["graphs"]["decoder"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match=r"no graph\(s\) \['decoder'\]"):
        load_model_dir(root)


def test_truncated_file(tmp_path):
    root = make_dir(tmp_path / "m")
    (root / "decoder.onnx").write_bytes(b"gr")
    with pytest.raises(ModelDirError, match=r"decoder.onnx has 2 bytes, the manifest says 14.*truncated"):
        load_model_dir(root)


def test_file_from_another_model_fails_the_hash(tmp_path):
    ours, theirs = make_dir(tmp_path / "a", b"graph-a"), make_dir(tmp_path / "b", b"graph-b")
    (ours / "condition.onnx").write_bytes((theirs / "condition.onnx").read_bytes())  # same size, other bytes
    with pytest.raises(ModelDirError, match=r"condition.onnx: sha256 does not match.*another model"):
        load_model_dir(ours)
    assert load_model_dir(ours, verify_hashes=False).path == ours  # sizes alone cannot tell


def test_wrong_hash_in_manifest(tmp_path):
    root = make_dir(tmp_path / "m")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["denoiser.onnx"]["sha256"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match=r"denoiser\.onnx: sha256 does not match"):
        load_model_dir(root)
