"""Weights: published checkpoints, our safetensors format, ImageNet encoder init."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hmhi_cli import weights
from hmhi_cli.errors import WeightsError
from hmhi_cli.model import build_model
from parity import FIXTURE, deterministic_state_dict

DAVIS_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "davis16-dev"


def random_b0_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = build_model("mit_b0")
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    return net.state_dict()


@pytest.mark.skipif(not FIXTURE.exists(), reason="parity fixture absent")
def test_published_checkpoint_with_module_prefix_loads_strictly(tmp_path):
    state = deterministic_state_dict()
    path = tmp_path / "HMHI_davis.pth"
    torch.save({"network": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    net, info = weights.load_weights(path)
    assert info.encoder == "mit_b1" and info.input_size == 512 and info.memory_limit == 3
    assert info.source_format == "published-checkpoint"
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not net.training


def test_safetensors_round_trip_keeps_tensors_and_metadata(tmp_path):
    state = random_b0_state()
    net = build_model("mit_b0", memory_limit=4)
    net.load_state_dict(state)
    path = tmp_path / "small.safetensors"
    weights.save_weights(net, path, input_size=256, provenance={"steps": 10})
    loaded, info = weights.load_weights(path)
    assert (info.encoder, info.input_size, info.memory_limit) == ("mit_b0", 256, 4)
    assert info.provenance == {"steps": 10}
    assert loaded.memory_limit == 4
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not list(tmp_path.glob(".*part*")), "no temporary file left behind"


def test_convert_published_to_safetensors(tmp_path):
    state = random_b0_state(1)
    source = tmp_path / "ckpt.pth"
    torch.save({"network": state}, source)
    info = weights.convert(source, tmp_path / "out.safetensors", input_size=384)
    assert (info.encoder, info.input_size, info.memory_limit) == ("mit_b0", 384, 3)
    described = weights.describe(tmp_path / "out.safetensors")
    assert described.source_format == "hmhi-safetensors" and described.input_size == 384
    assert described.provenance["converted_from"] == "ckpt.pth"


def test_truncated_file_is_a_clear_error(tmp_path):
    source = tmp_path / "ckpt.pth"
    torch.save({"network": random_b0_state()}, source)
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        weights.load_weights(source)
    safetensors_path = tmp_path / "w.safetensors"
    net = build_model("mit_b0")
    weights.save_weights(net, safetensors_path, input_size=256)
    data = safetensors_path.read_bytes()
    safetensors_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="damaged safetensors"):
        weights.load_weights(safetensors_path)


def test_pickled_code_is_never_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed!",))

    source = tmp_path / "evil.pth"
    torch.save({"network": Payload()}, source)
    with pytest.raises(WeightsError):
        weights.load_weights(source)


def test_mismatch_names_missing_and_unexpected_keys(tmp_path):
    state = random_b0_state()
    state.pop("decode_head.predictor.conv.bias")
    state["decode_head.extra.weight"] = torch.zeros(1)
    source = tmp_path / "bad.pth"
    torch.save({"network": state}, source)
    with pytest.raises(WeightsError) as error:
        weights.load_weights(source)
    message = str(error.value)
    assert "decode_head.predictor.conv.bias" in message and "decode_head.extra.weight" in message
    assert "\n" not in message


def segformer_layout(net) -> dict[str, torch.Tensor]:
    """An ImageNet MiT file as NVlabs ships it: no adapters, plus a classification head."""
    state = {k: v.clone() for k, v in net.backbone.state_dict().items() if "adapter" not in k}
    state["head.weight"] = torch.zeros(1000, net.config.widths[3])
    state["head.bias"] = torch.zeros(1000)
    return state


def mmseg_layout(segformer: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights renamed to mmsegmentation's MixVisionTransformer keys."""
    out: dict[str, torch.Tensor] = {}
    blocks: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in segformer.items():
        if key.startswith("head."):
            continue
        if m := re.match(r"patch_embed(\d)\.(proj|norm)\.(\w+)", key):
            out[f"backbone.layers.{int(m[1]) - 1}.0.{'projection' if m[2] == 'proj' else 'norm'}.{m[3]}"] = value
        elif m := re.match(r"norm(\d)\.(\w+)", key):
            out[f"backbone.layers.{int(m[1]) - 1}.2.{m[2]}"] = value
        else:
            m = re.match(r"block(\d)\.(\d+)\.(.*)", key)
            prefix = f"backbone.layers.{int(m[1]) - 1}.1.{m[2]}."
            name = m[3]
            if name.startswith(("attn.q.", "attn.kv.")):
                blocks.setdefault(prefix, {})[name] = value
                continue
            mapping = {"attn.proj.": "attn.attn.out_proj.", "mlp.fc1.": "ffn.layers.0.",
                       "mlp.dwconv.dwconv.": "ffn.layers.1.", "mlp.fc2.": "ffn.layers.4."}
            for ours, theirs in mapping.items():
                if name.startswith(ours):
                    name = theirs + name[len(ours):]
                    if ours in ("mlp.fc1.", "mlp.fc2.") and name.endswith("weight"):
                        value = value[:, :, None, None]
            out[prefix + name] = value
    for prefix, parts in blocks.items():
        for kind in ("weight", "bias"):
            out[prefix + f"attn.attn.in_proj_{kind}"] = torch.cat([parts[f"attn.q.{kind}"], parts[f"attn.kv.{kind}"]])
    return {"state_dict": out}


@pytest.mark.parametrize("layout", ["segformer", "mmsegmentation"])
def test_imagenet_encoder_init(tmp_path, layout):
    source_net = build_model("mit_b0")
    source_net.load_state_dict(random_b0_state(2))
    segformer = segformer_layout(source_net)
    payload = segformer if layout == "segformer" else mmseg_layout(segformer)
    path = tmp_path / "mit_b0.pth"
    torch.save(payload, path)
    target = build_model("mit_b0")
    report = weights.init_encoder_from_imagenet(target, path)
    assert report.layout == layout
    assert report.loaded == len(segformer) - 2
    assert all("adapter" in key for key in report.not_in_file) and report.not_in_file
    for key, value in segformer.items():
        if not key.startswith("head."):
            assert torch.equal(target.backbone.state_dict()[key], value), key


def test_imagenet_init_rejects_wrong_encoder(tmp_path):
    path = tmp_path / "mit_b1.pth"
    torch.save(segformer_layout(build_model("mit_b1")), path)
    with pytest.raises(WeightsError):
        weights.init_encoder_from_imagenet(build_model("mit_b0"), path)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hmhi_cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_weights_convert_and_info(tmp_path):
    source = tmp_path / "ckpt.pth"
    torch.save({"network": random_b0_state()}, source)
    target = tmp_path / "w.safetensors"
    result = run_cli("weights", "convert", str(source), str(target), "--size", "320")
    assert result.returncode == 0, result.stderr
    result = run_cli("weights", "info", str(target), "--json")
    assert result.returncode == 0, result.stderr
    details = json.loads(result.stdout)
    assert details["encoder"] == "mit_b0" and details["input_size"] == 320 and details["tensors"] == 552
    again = run_cli("weights", "convert", str(source), str(target))
    assert again.returncode != 0 and "already exists" in again.stderr
    missing = run_cli("weights", "info", str(tmp_path / "nope.pth"))
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0 and "Traceback" not in missing.stderr


def test_saved_files_follow_the_umask_not_private_temp_permissions(tmp_path):
    path = tmp_path / "w.safetensors"
    weights.save_weights(build_model("mit_b0"), path, input_size=64)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def call_cli(capsys, *args: str) -> tuple[int, str]:
    """Run the real ``hmhi`` entry point in this process; return its exit code and stderr."""
    from hmhi_cli.cli import main

    argv = sys.argv
    sys.argv = ["hmhi", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err.strip()


MALFORMED_METADATA = {
    "encoder": [None, "mit_b9"],
    "input_size": ["abc", "0", "33", "-32", "99999968"],
    "flow_max_side": ["abc"],
    "memory_limit": ["0"],
    "provenance": ["{not json", "[1, 2]"],
}


@pytest.fixture(scope="module")
def tiny_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("mit_b0").state_dict()


def test_malformed_metadata_is_one_line_naming_the_field(tiny_tensors, tmp_path, capsys, monkeypatch):
    from safetensors.torch import save_file

    good = {"format": weights.FORMAT_NAME, "encoder": "mit_b0", "input_size": "64", "memory_limit": "3",
            "provenance": "{}"}
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * index, np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    for field_name, values in MALFORMED_METADATA.items():
        for value in values:
            metadata = dict(good)
            metadata.pop(field_name, None)
            if value is not None:
                metadata[field_name] = value
            path = tmp_path / f"{field_name}-{len(str(value))}.safetensors"
            save_file(tiny_tensors, str(path), metadata=metadata)
            monkeypatch.setenv("HMHI_WEIGHTS", str(path))
            for args in (("weights", "info", str(path)), ("weights", "info"), ("info",),
                         ("segment", str(clip), "-o", str(tmp_path / "out"), "--weights", str(path))):
                code, message = call_cli(capsys, *args)
                assert code == 2 and message.count("\n") == 0, (args, value, message)
                assert f"bad metadata field '{field_name}'" in message and str(path) in message, (args, message)
    assert not (tmp_path / "out").exists()


def test_weights_info_defaults_to_the_embedded_weights_and_names_folders(tiny_tensors, tmp_path, capsys, monkeypatch):
    path = tmp_path / "w.safetensors"
    net = build_model("mit_b0")
    net.load_state_dict(tiny_tensors)
    weights.save_weights(net, path, input_size=64, provenance={"datasets": ["/home/someone/data/DAVIS", "DUTS-TR"]})
    monkeypatch.setenv("HMHI_WEIGHTS", str(path))
    assert call_cli(capsys, "weights", "info", "--json") == (0, "")
    assert call_cli(capsys, "weights", "info", str(tmp_path)) == (2, f"error: {tmp_path}: is a folder, not a weights file")
    result = run_cli("weights", "info", "--json")
    details = json.loads(result.stdout)
    assert details["path"] == str(path) and details["provenance"] == {"datasets": ["DAVIS", "DUTS-TR"]}
    assert "/home/someone" not in run_cli("weights", "info").stdout


def limit_file_size() -> None:
    """In a child process: files can grow to 1 MB, then writes fail as on a full disk."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_weights_that_cannot_be_written_are_one_line_with_exit_1(tiny_tensors, tmp_path, capsys):
    source = tmp_path / "ckpt.pth"
    torch.save({"network": tiny_tensors}, source)
    folder = tmp_path / "folder.safetensors"
    folder.mkdir()
    code, message = call_cli(capsys, "weights", "convert", str(source), str(folder), "--overwrite")
    assert (code, message) == (1, f"error: {folder}: is a folder; give the weights a file name")
    target = tmp_path / "out" / "w.safetensors"
    target.parent.mkdir()
    full = subprocess.run([sys.executable, "-m", "hmhi_cli", "weights", "convert", str(source), str(target)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size)
    assert full.returncode == 1, full.stderr
    assert full.stderr.strip().count("\n") == 0 and "Traceback" not in full.stderr, full.stderr
    assert f"cannot write the weights to {target}" in full.stderr and "File too large" in full.stderr, full.stderr
    assert not any(target.parent.iterdir()), "no partial file is left"


def test_weights_info_without_a_path_says_it_shows_the_default_weights_and_prints_no_machine_path():
    """The shipped weights record their training data as ``../shared/davis16-train``: shown as its name."""
    environment = {name: value for name, value in os.environ.items() if name != "HMHI_WEIGHTS"} | {"COLUMNS": "200"}
    default = weights.default_weights_path()
    shown = subprocess.run([sys.executable, "-m", "hmhi_cli", "weights", "info"], capture_output=True, text=True,
                           timeout=300, env=environment)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"weights\s+the default: hmhi_default\.safetensors \(embedded in hmhi\)", shown.stdout)
    recorded = json.loads(weights.read_metadata(default)["provenance"])
    machine_paths = [value for value in recorded.get("datasets", []) if "/" in value]
    assert all(path not in shown.stdout for path in machine_paths), shown.stdout
    as_json = subprocess.run([sys.executable, "-m", "hmhi_cli", "weights", "info", "--json"], capture_output=True,
                             text=True, timeout=300, env=environment)
    details = json.loads(as_json.stdout)
    assert details["default"] is True and details["path"] == str(default)
    assert details["provenance"]["datasets"] == [path.rsplit("/", 1)[-1] for path in recorded["datasets"]]
    assert not any("/" in name for name in details["provenance"]["datasets"])
    assert json.loads(run_cli("weights", "info", str(default), "--json").stdout)["default"] is False


def test_converted_weights_record_the_source_by_name_and_sha256_never_by_path(tiny_tensors, tmp_path):
    source = tmp_path / "machine" / "runs" / "ckpt.pth"
    source.parent.mkdir(parents=True)
    torch.save({"network": tiny_tensors}, source)
    target = tmp_path / "w.safetensors"
    assert run_cli("weights", "convert", str(source), str(target)).returncode == 0
    raw = weights.read_metadata(target)["provenance"]
    assert str(tmp_path) not in raw and "machine" not in raw
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    assert json.loads(raw) == {"converted_from": "ckpt.pth", "source_format": "published-checkpoint",
                               "source_sha256": sha256}
    older = tmp_path / "older.safetensors"  # written by an earlier version, with a machine path
    net = build_model("mit_b0")
    net.load_state_dict(tiny_tensors)
    weights.save_weights(net, older, input_size=64, provenance={"datasets": ["/work/runs/data/DAVIS"], "steps": 9})
    again = tmp_path / "again.safetensors"
    assert run_cli("weights", "convert", str(older), str(again)).returncode == 0
    assert json.loads(weights.read_metadata(again)["provenance"]) == {"datasets": ["DAVIS"], "steps": 9}


@pytest.mark.skipif(not (DAVIS_DEV / "JPEGImages").exists(), reason="../shared/davis16-dev absent")
def test_fine_tuned_weights_record_dataset_names_and_the_starting_weights_hash(tiny_tensors, tmp_path):
    start = tmp_path / "start.safetensors"
    net = build_model("mit_b0")
    net.load_state_dict(tiny_tensors)
    weights.save_weights(net, start, input_size=64)
    run = tmp_path / "run"
    result = run_cli("finetune", str(start), "--out", str(run), "--data", f"{DAVIS_DEV}:1:blackswan", "--size", "64",
                     "--steps", "1", "--batch-size", "1", "--clip-length", "2", "--checkpoint-every", "1", "-q")
    assert result.returncode == 0, result.stderr
    raw = weights.read_metadata(run / "checkpoints" / "step_0000001.safetensors")["provenance"]
    assert str(DAVIS_DEV) not in raw and "/" not in raw, raw
    provenance = json.loads(raw)
    assert provenance["datasets"] == ["davis16-dev"] and provenance["trained_steps"] == 1
    assert provenance["fine_tuned_from"] == {"file": "start.safetensors",
                                             "sha256": hashlib.sha256(start.read_bytes()).hexdigest()}


def saved_b0(path: Path, seed: int, input_size: int = 64, steps: int = 1) -> dict[str, torch.Tensor]:
    """Save a randomly initialised MiT-b0 as our safetensors (DIS at 32 px, one dataset); return its tensors."""
    net = build_model("mit_b0")
    net.load_state_dict(random_b0_state(seed))
    weights.save_weights(net, path, input_size=input_size, flow_max_side=32,
                         provenance={"datasets": ["davis16-train"], "trained_steps": steps})
    return {key: value.clone() for key, value in net.state_dict().items()}


def test_average_of_weights_files_is_the_mean_of_each_tensor_and_names_its_sources(tmp_path):
    paths = [tmp_path / f"step_{n}.safetensors" for n in (1, 2, 3)]
    states = [saved_b0(path, seed=n, steps=100 * n) for n, path in enumerate(paths, 1)]
    target = tmp_path / "average.safetensors"
    info = weights.average_weights(paths, target)
    averaged, _ = weights.read_state_dict(target)
    assert averaged.keys() == states[0].keys()
    for key, value in averaged.items():
        if value.is_floating_point():
            expected = (states[0][key].double() + states[1][key].double() + states[2][key].double()) / 3
            torch.testing.assert_close(value, expected.float(), rtol=0, atol=1e-7)
        else:
            assert torch.equal(value, states[2][key])
    recorded = weights.describe(target)
    assert (recorded.encoder, recorded.input_size, recorded.flow_max_side) == ("mit_b0", 64, 32) == (
        info.encoder, info.input_size, info.flow_max_side)
    assert recorded.provenance["datasets"] == ["davis16-train"] and "trained_steps" not in recorded.provenance
    assert recorded.provenance["averaged_from"] == [
        {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "trained_steps": 100 * n}
        for n, path in enumerate(paths, 1)]


def test_average_refuses_one_file_and_files_of_different_settings(tmp_path):
    first, other = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    saved_b0(first, seed=1)
    saved_b0(other, seed=2, input_size=96)
    with pytest.raises(WeightsError, match="at least two"):
        weights.average_weights([first], tmp_path / "out.safetensors")
    with pytest.raises(WeightsError, match=r"b\.safetensors: records input_size 96, but .*a\.safetensors records 64"):
        weights.average_weights([first, other], tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_cli_weights_average_writes_once_and_never_over_a_source(tmp_path):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    saved_b0(first, seed=1)
    saved_b0(second, seed=2)
    target = tmp_path / "avg.safetensors"
    result = run_cli("weights", "average", str(first), str(second), "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "the average of 2 files" in result.stderr and target.is_file()
    for args, message in (([str(first), str(second), "-o", str(target)], "already exists"),
                          ([str(first), str(second), "-o", str(first), "--overwrite"], "is one of the files"),
                          ([str(first), str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "x.safetensors")],
                           "not found")):
        again = run_cli("weights", "average", *args)
        assert again.returncode != 0 and message in again.stderr, again.stderr
        assert again.stderr.strip().count("\n") == 0 and "Traceback" not in again.stderr
