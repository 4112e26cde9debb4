"""Training: a few steps on synthetic clips, loss goes down, resume repeats the next step exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hmhi_cli.interrupt import Stopped, at_safe_points, handle_stop_signals
from hmhi_cli.training.data import ClipSampler, DatasetSpec
from hmhi_cli.training.loss import LossWeights, clip_loss, dice_loss
from hmhi_cli.training.trainer import Trainer, TrainConfig, learning_rate

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "davis16-dev"


def tiny_config(out: Path, **overrides) -> TrainConfig:
    settings = dict(out_dir=out, encoder="mit_b0", size=64, clip_length=3, batch_size=2, steps=4, lr=1e-3,
                    synthetic_fraction=1.0, checkpoint_every=2, seed=3)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_dice_and_clip_loss_by_hand():
    logits = torch.tensor([[[[10.0, -10.0], [-10.0, -10.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-4)
    assert dice_loss(-logits, target).item() == pytest.approx(1 - 1 / (3 + 1 + 1), abs=1e-3)
    confident = clip_loss(logits[None], target[None])
    wrong = clip_loss(-logits[None], target[None])
    assert confident.item() < 1e-3 < wrong.item()
    zero = torch.zeros(1, 2, 1, 2, 2)
    bce = torch.log(torch.tensor(2.0))
    focal = 0.25 * 0.25 * bce * 0.5 + 0.75 * 0.25 * bce * 0.5
    dice = 1 - (2 * 0.5 * 2 + 1) / (2 + 2 + 1)
    expected_per_frame = 20 * (focal + 0.5 * bce) + dice
    target_half = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 2, 2).expand(1, 2, 1, 2, 2)
    assert clip_loss(zero, target_half).item() == pytest.approx(2 * expected_per_frame.item(), rel=1e-5)
    assert LossWeights().focal == 20.0


def test_learning_rate_schedule():
    config = tiny_config(Path("unused"), warmup_steps=10, steps=110, lr=1.0, cosine=True)
    assert learning_rate(config, 0) == pytest.approx(0.1)
    assert learning_rate(config, 9) == pytest.approx(1.0)
    assert learning_rate(config, 10) == pytest.approx(1.0)
    assert learning_rate(config, 110) == pytest.approx(0.05)
    assert learning_rate(tiny_config(Path("unused")), 50) == pytest.approx(1e-3)


def test_sampler_is_deterministic_per_step():
    sampler = ClipSampler([], size=64, clip_length=3, synthetic_fraction=1.0, seed=1)
    first, again, other = sampler.batch(5, 2), sampler.batch(5, 2), sampler.batch(6, 2)
    assert first.images.shape == (2, 3, 3, 64, 64) and first.masks.shape == (2, 3, 1, 64, 64)
    assert torch.equal(first.images, again.images) and torch.equal(first.flows, again.flows)
    assert not torch.equal(first.images, other.images)
    assert set(first.masks.unique().tolist()) <= {0.0, 1.0} and first.masks.sum() > 0


def test_sampler_defaults_are_those_of_a_training_run():
    sampler_fields = {f.name: f.default for f in dataclasses.fields(ClipSampler)}
    config_fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    shared = sorted(set(sampler_fields) & set(config_fields) - {"datasets", "size"})
    assert "flow_max_side" in shared and "synthetic_fraction" in shared
    assert {name: sampler_fields[name] for name in shared} == {name: config_fields[name] for name in shared}


@pytest.mark.skipif(not DAVIS.exists(), reason="../shared/davis16-dev absent")
def test_sampler_reads_real_clips_in_order():
    sampler = ClipSampler([DatasetSpec(DAVIS, sequences=("blackswan",))], size=64, clip_length=5,
                          synthetic_fraction=0.0, seed=0)
    batch = sampler.batch(0, 1)
    assert batch.images.shape == (1, 5, 3, 64, 64)
    assert 0.02 < batch.masks.mean().item() < 0.6, "blackswan's swan covers part of the frame"


def test_loss_decreases_and_resume_repeats_the_next_step(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(tmp_path / "run", steps=12, clip_length=2, checkpoint_every=6), log=lambda m: None)
    losses = []
    trainer.run(lambda record: losses.append(record.loss))
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    pointer = json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())
    assert pointer["step"] == 12

    resumed = Trainer(tiny_config(tmp_path / "run", steps=12, clip_length=2, checkpoint_every=6), log=lambda m: None)
    resumed.resume(tmp_path / "run")
    assert resumed.step == 12
    for name, value in resumed.net.state_dict().items():
        assert torch.equal(value, trainer.net.state_dict()[name]), name
    after_original = trainer.train_step()
    after_resumed = resumed.train_step()
    assert after_resumed.loss == pytest.approx(after_original.loss, rel=1e-6)
    for name, value in resumed.net.state_dict().items():
        torch.testing.assert_close(value, trainer.net.state_dict()[name], rtol=1e-5, atol=1e-6)


def test_cli_train_then_resume(tmp_path):
    run = tmp_path / "cli-run"
    base = [sys.executable, "-m", "hmhi_cli", "train", "--out", str(run), "--encoder", "mit_b0", "--size", "64",
            "--clip-length", "2", "--batch-size", "1", "--synthetic", "1.0", "--checkpoint-every", "2"]
    first = subprocess.run(base + ["--steps", "2"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    refused = subprocess.run(base + ["--steps", "3"], capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "--resume" in refused.stderr and "Traceback" not in refused.stderr
    second = subprocess.run(base + ["--steps", "3", "--resume"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "resumed at step 2" in second.stderr
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 3
    assert (run / "checkpoints" / "step_0000003.safetensors").is_file()


def test_a_stop_signal_during_an_optimizer_step_lets_the_step_end_and_checkpoints_it(tmp_path):
    from safetensors.torch import load_file

    trainer = Trainer(tiny_config(tmp_path / "run", steps=4, clip_length=2, checkpoint_every=0), log=lambda m: None)
    real_step = trainer.optimizer.step

    def sigterm_then_step(*args, **kwargs):
        if trainer.step == 0:
            os.kill(os.getpid(), signal.SIGTERM)  # half-way through the first step, after its backward pass
        return real_step(*args, **kwargs)

    trainer.optimizer.step = sigterm_then_step
    with handle_stop_signals(), at_safe_points(), pytest.raises(Stopped):
        trainer.run()
    assert trainer.step == 1
    checkpoints = tmp_path / "run" / "checkpoints"
    assert json.loads((checkpoints / "latest.json").read_text())["step"] == 1
    saved = load_file(checkpoints / "step_0000001.safetensors")
    for name, value in trainer.net.state_dict().items():
        if name in saved:
            assert torch.equal(saved[name], value), name


def test_cli_sigterm_while_training_checkpoints_the_last_step_and_says_how_to_go_on(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "hmhi_cli", "train", "--out", str(run), *TINY_RUN,
                                "--steps", "1000", "--checkpoint-every", "1", "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "latest.json").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "training never wrote a checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGSTOP)  # wherever it is now, in a step or writing a checkpoint
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1] == "interrupted (SIGTERM)", stderr
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    assert lines[-2] == f"stopped after step {step}, which is checkpointed: --resume goes on from there", stderr
    assert (run / "checkpoints" / f"step_{step:07d}.safetensors").is_file()
    assert (run / "checkpoints" / f"step_{step:07d}.optim.pt").is_file()


TINY_RUN = ("--encoder", "mit_b0", "--size", "64", "--clip-length", "2", "--batch-size", "1", "--synthetic", "1.0")


def train_cli(out: Path, *args: str, **options) -> subprocess.CompletedProcess:
    """``hmhi train`` of the tiniest model on synthetic clips into ``out``."""
    return subprocess.run([sys.executable, "-m", "hmhi_cli", "train", "--out", str(out), *TINY_RUN, *args],
                          capture_output=True, text=True, timeout=600, **options)


def test_cli_random_init_with_a_seed_gives_the_same_weights_twice(tmp_path):
    from safetensors.torch import load_file

    weights = []
    for name in ("first", "second"):
        result = train_cli(tmp_path / name, "--random-init", "--seed", "7", "--steps", "1", "-q")
        assert result.returncode == 0, result.stderr
        weights.append(load_file(tmp_path / name / "checkpoints" / "step_0000001.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def limit_file_size_to_60_mb() -> None:
    """In a child process: files can grow to 60 MB, then writes fail as on a full disk: mit_b0's
    weights (48 MB) are written, its optimizer state (two moments per weight, 95 MB) is not."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000_000, 60_000_000))


def test_cli_a_checkpoint_that_cannot_be_written_is_one_line_with_exit_1(tmp_path):
    result = train_cli(tmp_path / "run", "--steps", "1", "-q", preexec_fn=limit_file_size_to_60_mb)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    optimizer = tmp_path / "run" / "checkpoints" / "step_0000001.optim.pt"
    assert result.stderr.strip() == f"error: cannot write {optimizer}: File too large", result.stderr
    assert not (tmp_path / "run" / "checkpoints" / "latest.json").exists()


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """A tiny run of two steps with a checkpoint after each; tests damage copies of it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    result = train_cli(run, "--steps", "2", "--checkpoint-every", "1", "-q")
    assert result.returncode == 0, result.stderr
    return run


def test_cli_resume_never_runs_pickled_code_in_the_optimizer_state_and_says_so_in_one_line(two_checkpoints, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed!",))

    run = Path(shutil.copytree(two_checkpoints, tmp_path / "run"))
    optimizer = run / "checkpoints" / "step_0000002.optim.pt"
    torch.save({"optimizer": Payload(), "step": 2}, optimizer)
    result = train_cli(run, "--steps", "3", "--resume", "-q")
    assert result.returncode == 2 and "executed!" not in result.stdout, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == (f"error: {optimizer}: the checkpoint contains pickled code (Python objects "
                                     "beyond tensors), which hmhi never executes; save a state_dict() instead")


def test_cli_resume_with_a_damaged_latest_json_takes_the_newest_intact_checkpoint(two_checkpoints, tmp_path):
    run = Path(shutil.copytree(two_checkpoints, tmp_path / "run"))
    checkpoints = run / "checkpoints"
    pointer = checkpoints / "latest.json"
    pointer.write_text(pointer.read_text()[:20])  # cut, as by a full disk before atomic writes
    newest = checkpoints / "step_0000002.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])  # and the newest checkpoint damaged too
    result = train_cli(run, "--steps", "3", "--resume", "-q")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"{pointer} is damaged; resuming from the newest intact checkpoint, step_0000001.safetensors\n" \
           f"resumed at step 1 from {checkpoints}\n" in result.stderr, result.stderr
    assert json.loads(pointer.read_text())["step"] == 3

    pointer.write_text("")
    for optimizer in checkpoints.glob("*.optim.pt"):
        optimizer.unlink()
    result = train_cli(run, "--steps", "4", "--resume", "-q")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {pointer} is damaged and {checkpoints} holds no intact checkpoint to " \
                                    "resume from", result.stderr


def test_torchrun_two_cpu_processes(tmp_path):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "hmhi_cli", "train", "--out", str(run), "--encoder", "mit_b0", "--size", "64",
               "--clip-length", "2", "--batch-size", "1", "--synthetic", "1.0", "--steps", "2",
               "--checkpoint-every", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("finished at step 2") == 1, "only rank 0 reports"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 2


def test_palette_masks_are_read_as_the_evaluation_reads_them(tmp_path):
    from hmhi_cli.training.data import _read_mask

    image = pytest.importorskip("PIL.Image")
    indices = np.zeros((4, 6), np.uint8)
    indices[1:3, 2:5] = 1
    palette = image.fromarray(indices, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    path = tmp_path / "00000.png"
    palette.save(path)
    np.testing.assert_array_equal(_read_mask(path, 4, 6), indices)
    assert _read_mask(path, 8, 12).sum() == 4 * indices.sum()
