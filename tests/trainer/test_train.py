import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.cli import main
from trainer.generate import generate
from trainer.train import Trainer, load_model


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fit_writes_a_model_that_generates(tiny_run):
    run = tiny_run
    for name in ("model.pt", "checkpoint.pt", "log.jsonl", "loss_autoencoder.png", "loss_diffusion.png"):
        assert (run / name).is_file(), name
    stages = {r["stage"] for r in _log(run)}
    assert stages == {"autoencoder", "diffusion"}
    model = load_model(run)
    audio = np.random.default_rng(0).standard_normal((2, 30, 57)).astype(np.float32)
    face = np.zeros((2, 30, 58), np.float32)
    a, b = generate(model, audio, face, seed=3), generate(model, audio, face, seed=3)
    assert a.shape == (2, 30, 83) and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert not np.allclose(a, generate(model, audio, face, seed=4))  # diversity comes from the noise


@pytest.mark.slow
def test_interrupted_fit_resumes_where_it_stopped(synth_corpus, tiny_config, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_update = Trainer._update_ema

    def crash_at_15(self):
        real_update(self)
        if self.stage == "diffusion" and self.step == 15:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_update_ema", crash_at_15)
    args = ["fit", "--config", str(tiny_config), "--data", str(synth_corpus), "--out", str(run), "--no-progress"]
    assert main(args) == 130
    assert not (run / "model.pt").exists()
    monkeypatch.setattr(Trainer, "_update_ema", real_update)
    assert main(args) == 0
    steps = [r["step"] for r in _log(run) if r["stage"] == "diffusion"]
    assert steps == [10, 20, 20] or steps[-1] == 20  # logged at 10 before the crash, resumed from checkpoint 10
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert state["stage"] == "done"


def test_resume_refuses_a_different_config(synth_corpus, tiny_config, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"config": {"model": {}, "train": {}}}, run / "checkpoint.pt")
    args = ["fit", "--config", str(tiny_config), "--data", str(synth_corpus), "--out", str(run), "--no-progress"]
    assert main(args) == 2


@pytest.mark.slow
def test_fit_runs_data_parallel_under_torchrun_with_a_stream_per_rank_that_resumes(synth_corpus, tiny_config, tmp_path):
    """Two CPU processes (gloo) through torchrun, the path the paper tier takes on several GPUs: the same initial
    weights, different noise on each rank, and a Ctrl-C on one rank stops both; the rerun (tests/trainer/ddp_fit.py
    runs `fit` twice in the same processes) continues each rank's own streams."""
    torchrun = Path(sys.executable).with_name("torchrun")
    run, records = tmp_path / "run", tmp_path / "records"
    records.mkdir()
    cmd = [str(torchrun), "--nproc-per-node", "2", "-m", "tests.trainer.ddp_fit", str(records), "fit"]
    cmd += ["--config", str(tiny_config), "--data", str(synth_corpus), "--out", str(run), "--no-progress"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained") == 1  # rank 0 reports and writes
    assert load_model(run).cfg.window == 16
    r0, r1 = (torch.load(records / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["stopped_status"] == r1["stopped_status"] == 130 and r0["resumed_status"] == 0
    assert torch.equal(r0["initial_weights"], r1["initial_weights"])
    assert r0["noise_before_resume"] == r1["noise_before_resume"] == 13  # both stopped after diffusion step 13
    assert len(r0["noise"]) == len(r1["noise"]) == 20
    assert all(not torch.allclose(a, b) for a, b in zip(r0["noise"], r1["noise"], strict=True))  # every step
    for r in (r0, r1):  # the resume continues the stream where this rank stopped
        assert r["at_resume"]["numpy"] == r["at_stop"]["numpy"]
        assert torch.equal(r["at_resume"]["torch"], r["at_stop"]["torch"])
    assert not torch.equal(r0["at_stop"]["torch"], r1["at_stop"]["torch"])
    assert r0["at_stop"]["numpy"] != r1["at_stop"]["numpy"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_during_fit_saves_the_step_under_way_and_the_rerun_resumes_there(
    synth_corpus, tiny_config, tmp_path, monkeypatch, capfd, name, status
):
    import signal

    run = tmp_path / "run"
    real_update = Trainer._update_ema
    before = signal.getsignal(signal.SIGTERM)

    def stop_at_13(self):
        real_update(self)
        if self.stage == "diffusion" and self.step == 13:
            os.kill(os.getpid(), getattr(signal, name))  # a real signal: the handler only asks the loop to stop

    monkeypatch.setattr(Trainer, "_update_ema", stop_at_13)
    args = ["fit", "--config", str(tiny_config), "--data", str(synth_corpus), "--out", str(run), "--no-progress"]
    assert main(args) == status
    err = capfd.readouterr().err
    assert "reactdiff-trainer fit: stopping" in err and "at diffusion step 13" in err and "resume" in err
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    assert (state["stage"], state["step"]) == ("diffusion", 13)  # not the last periodic checkpoint (10)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) is before
    monkeypatch.setattr(Trainer, "_update_ema", real_update)
    assert main(args) == 0
    assert [r["step"] for r in _log(run) if r["stage"] == "diffusion"] == [10, 20]  # 11..20 were not redone


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_a_fit_resumed_on_a_gpu_continues_its_cuda_stream(synth_corpus, tiny_config, tmp_path, monkeypatch):
    """The CUDA generator (timesteps, noise and dropout on a GPU) was not in the checkpoint: a resume restarted it."""
    import signal

    real_update, real_run = Trainer._update_ema, Trainer.run
    states = {}

    def stop_at_13(self):
        real_update(self)
        if self.stage == "diffusion" and self.step == 13:
            states["at_stop"] = torch.cuda.get_rng_state(self.device)
            os.kill(os.getpid(), signal.SIGINT)  # saves the checkpoint after this step

    def recording_run(self):
        states["at_resume"] = torch.cuda.get_rng_state(self.device)
        return real_run(self)

    monkeypatch.setattr(Trainer, "_update_ema", stop_at_13)
    args = ["fit", "--config", str(tiny_config), "--data", str(synth_corpus), "--out", str(tmp_path / "run")]
    args += ["--device", "cuda", "--no-progress"]
    assert main(args) == 130
    monkeypatch.setattr(Trainer, "_update_ema", real_update)
    monkeypatch.setattr(Trainer, "run", recording_run)
    assert main(args) == 0
    assert torch.equal(states["at_resume"], states["at_stop"])


def test_training_windows_mark_the_face_absent_where_the_tracker_never_found_it():
    from trainer.train import ClipArrays, sample_batch

    frames = 200
    face = np.zeros((frames, 58), np.float32)
    face[:, 0] = np.arange(frames)  # a frame's index, to find where each window ends
    arrays = ClipArrays([np.zeros((frames, 57), np.float32)], [face], [np.zeros((frames, 83), np.float32)],
                        [np.zeros((frames, 25), np.float32)], [("s", "l")], [np.arange(frames) >= 100])  # fmt: skip
    batch = sample_batch(arrays, 16, 256, np.random.default_rng(0), augment=False)
    ends = batch["face"][:, -1, 0]
    assert np.array_equal(batch["face_found"], (ends >= 100).astype(np.float32))  # a found frame in the window
    assert 0 < batch["face_found"].mean() < 1
