"""--params-out (engine.params_out): each format gives back exactly the float32 frames emitted, with their media
times; the streaming formats are readable while they are written; the .npz appears whole or not at all."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from engine.params_out import ParamsFormat, open_params
from engine.runtime.timelines import Emitted
from renderer.face import FACE_DIM, FACE_NAMES
from renderer.sinks import SinkError


def runs(seed: int = 0) -> list[Emitted]:
    """Three runs of listener frames (83 values each, as the engine emits them): 4, 1 and 7 frames from frame 0."""
    rng = np.random.default_rng(seed)
    out, first = [], 0
    for n in (4, 1, 7):
        smoothed = rng.normal(0, 0.3, (n, 83)).astype(np.float32)
        out.append(Emitted(first, smoothed + 1.0, smoothed, filled=n == 1))  # raw differs: the smoothed is written
        first += n
    return out


def read_back(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(t_s (T,), faces (T, 58) float32) from any format."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            assert data["faces"].dtype == np.float32
            return data["t_s"], data["faces"]
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert all(list(row) == ["t_s", *FACE_NAMES] for row in rows)
        values = np.array([list(row.values()) for row in rows])
    else:
        with path.open(newline="") as file:
            table = list(csv.reader(file))
        assert table[0] == ["t_s", *FACE_NAMES]
        values = np.array(table[1:], dtype=np.float64)
    return values[:, 0], values[:, 1:].astype(np.float32)


@pytest.mark.parametrize("fmt", list(ParamsFormat))
def test_every_format_gives_back_the_emitted_frames_exactly(tmp_path, fmt):
    path = tmp_path / f"listener{fmt.value}"
    writer = open_params(path)
    for block in runs():
        writer.write(block)
    writer.close()
    writer.close()  # twice is fine
    t_s, faces = read_back(path)
    want = np.concatenate([b.smoothed[:, :FACE_DIM] for b in runs()])
    np.testing.assert_array_equal(faces, want)  # 9 significant digits: the float32 itself
    np.testing.assert_allclose(t_s, np.arange(12) / 25, atol=1e-12)
    assert writer.frames == 12


@pytest.mark.parametrize("fmt", [ParamsFormat.JSONL, ParamsFormat.CSV])
def test_the_streaming_formats_can_be_read_while_they_are_written(tmp_path, fmt):
    path = tmp_path / f"live{fmt.value}"
    writer = open_params(path)
    blocks = runs()
    writer.write(blocks[0])
    writer.write(blocks[1])
    lines = path.read_text().splitlines()  # before close: every frame so far is in the file
    assert len(lines) == 5 + (fmt is ParamsFormat.CSV)
    writer.close()


def test_the_npz_appears_whole_at_the_end_or_not_at_all(tmp_path):
    path = tmp_path / "listener.npz"
    writer = open_params(path)
    writer.write(runs()[0])
    assert not path.exists() and list(tmp_path.iterdir()) == []
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["listener.npz"]
    empty = open_params(tmp_path / "none.npz")  # stopped before any frame: an empty, readable file
    empty.close()
    t_s, faces = read_back(tmp_path / "none.npz")
    assert faces.shape == (0, FACE_DIM) and t_s.shape == (0,)


def test_a_file_that_cannot_be_written_is_a_sink_error(tmp_path):
    (tmp_path / "x.csv").symlink_to("/dev/full")  # a disk that is full
    full = open_params(tmp_path / "x.csv")
    with pytest.raises(SinkError, match=r"--params-out .*x\.csv: cannot write it \(No space left on device\)"):
        full.write(runs()[0])
    with pytest.raises(SinkError, match="No space left on device"):
        full.close()  # what could not be written still cannot be
    gone = tmp_path / "gone"
    gone.mkdir()
    npz = open_params(gone / "p.npz")
    npz.write(runs()[0])
    gone.rmdir()  # the folder went away before the end
    with pytest.raises(SinkError, match=r"p\.npz: cannot write it"):
        npz.close()
    with pytest.raises(ValueError, match=r"p\.txt: write a \.npz, \.jsonl, \.csv file"):
        open_params(tmp_path / "p.txt")
