"""The model against the reference implementation's fixture (../shared/parity)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hmhi_cli.model import build_model
from parity import FIXTURE, deterministic_state_dict, load_fixture, reference_layout, tolerance

pytestmark = pytest.mark.skipif(not FIXTURE.exists(), reason=f"parity fixture not found at {FIXTURE}")


@pytest.fixture(scope="module")
def fixture_arrays():
    return load_fixture()


@pytest.fixture(scope="module")
def reference_net():
    net = build_model("mit_b1", memory_limit=3)
    net.load_state_dict(deterministic_state_dict(), strict=True)
    return net


def clip_inputs(arrays):
    return torch.from_numpy(arrays["images"]).float(), torch.from_numpy(arrays["flows"]).float()


def assert_close(name: str, ours: torch.Tensor, reference: np.ndarray) -> None:
    ours = ours.detach().numpy()
    assert ours.shape == reference.shape, f"{name}: shape {ours.shape} != {reference.shape}"
    difference = float(np.abs(ours - reference).max())
    assert difference <= tolerance(reference), f"{name}: max |ours - ref| = {difference:.3g}"


def test_state_dict_has_the_reference_keys_shapes_and_order():
    state = build_model("mit_b1").state_dict()
    layout = reference_layout()
    assert len(state) == 552
    assert [(key, list(tensor.shape)) for key, tensor in state.items()] == [(key, shape) for key, shape, _ in layout]
    assert all(tensor.dtype == torch.float32 for tensor in state.values())


def test_build_model_is_in_eval_mode():
    assert not build_model("mit_b1").training


def test_forward_clip_matches_fixture_logits(reference_net, fixture_arrays):
    images, flows = clip_inputs(fixture_arrays)
    with torch.no_grad():
        logits = reference_net.forward_clip(images, flows)
    assert logits.shape == (1, 5, 1, 256, 256)
    assert_close("logits", logits[0, :, 0], fixture_arrays["logits"])


def test_stream_matches_every_intermediate(reference_net, fixture_arrays):
    images, flows = clip_inputs(fixture_arrays)
    stream = reference_net.stream()
    checked = 0
    with torch.no_grad():
        for t in range(images.shape[1]):
            trace: dict[str, torch.Tensor] = {}
            logit = stream.step(images[:, t], flows[:, t], trace=trace)
            assert_close(f"frame{t} logits", logit[0, 0], fixture_arrays["logits"][t])
            for key, reference in fixture_arrays.items():
                if key.startswith(f"frame{t}_"):
                    assert_close(key, trace[key.removeprefix(f"frame{t}_")], reference)
                    checked += 1
    assert checked == len(fixture_arrays) - 3  # all but images, flows, logits
    assert len(stream.pixel_bank) == len(stream.semantic_bank) == 3


def test_memory_is_bounded_and_evicts_oldest(reference_net, fixture_arrays):
    images, flows = clip_inputs(fixture_arrays)
    stream = reference_net.stream(memory_limit=2)
    with torch.no_grad():
        for t in range(4):
            stream.step(images[:, t], flows[:, t])
            assert len(stream.pixel_bank) == min(t + 1, 2)
    with torch.no_grad():
        unlimited = reference_net.forward_clip(images[:, :4], flows[:, :4], memory_limit=4)
        limited = reference_net.forward_clip(images[:, :4], flows[:, :4], memory_limit=2)
    torch.testing.assert_close(unlimited[:, :3], limited[:, :3])
    assert not torch.allclose(unlimited[:, 3], limited[:, 3])


@pytest.mark.parametrize("encoder,size", [("mit_b0", 64), ("mit_b0", 96), ("mit_b1", 160)])
def test_any_square_multiple_of_32(encoder, size):
    torch.manual_seed(0)
    net = build_model(encoder)
    images = torch.randn(2, 3, 3, size, size)
    with torch.no_grad():
        logits = net.forward_clip(images, torch.randn_like(images))
    assert logits.shape == (2, 3, 1, size, size)
    assert torch.isfinite(logits).all()


def test_mit_b0_widths():
    net = build_model("mit_b0")
    assert net.backbone.patch_embed4.proj.out_channels == 256
    assert net.Mem0.dim == 64 and net.Mem1.dim == 256
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in build_model("mit_b1").parameters()) / 2


def test_rejects_bad_sizes():
    net = build_model("mit_b0")
    with pytest.raises(ValueError, match="multiple of 32"):
        net.stream().step(torch.zeros(1, 3, 48, 48), torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="multiple of 32"):
        net.stream().step(torch.zeros(1, 3, 64, 96), torch.zeros(1, 3, 64, 96))


def test_training_mode_is_stochastic_and_differentiable():
    torch.manual_seed(0)
    net = build_model("mit_b0").train()
    images = torch.randn(1, 3, 3, 64, 64)
    flows = torch.randn_like(images)
    first = net.forward_clip(images, flows)
    second = net.forward_clip(images, flows)
    assert not torch.allclose(first, second), "dropout/drop-path should make training passes differ"
    first.sum().backward()
    without_grad = [name for name, p in net.named_parameters() if p.grad is None]
    assert without_grad and all(".cross_attention." in name for name in without_grad), without_grad
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.forward_clip(images, flows), net.forward_clip(images, flows))


def test_reference_kernels_also_match_fixture(fixture_arrays):
    net = build_model("mit_b1").use_fast_kernels(False)
    net.load_state_dict(deterministic_state_dict(), strict=True)
    images, flows = clip_inputs(fixture_arrays)
    with torch.no_grad():
        logits = net.forward_clip(images, flows)
    assert_close("reference-kernel logits", logits[0, :, 0], fixture_arrays["logits"])


@pytest.mark.parametrize("keys", [300, 3200])
def test_sparse_top_k_equals_masked_reference_values_and_gradients(keys):
    from hmhi_cli.model.attention import QUERY_CHUNK, reference_attention, sparse_top_k_attention

    torch.manual_seed(0)
    q = torch.randn(2, 2, QUERY_CHUNK + 37, 16, requires_grad=True)
    k = torch.randn(2, 2, keys, 16, requires_grad=True)
    v = torch.randn(2, 2, keys, 8, requires_grad=True)
    fast = sparse_top_k_attention(q, k, v, top_k=50)
    reference = reference_attention(q, k, v, top_k=50)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    fast_grads = torch.autograd.grad(fast.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for ours, theirs in zip(fast_grads, reference_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("length, group_size", [(4096, 16), (3072, 8), (1024, 4), (600, None)])
def test_row_top_k_finds_the_same_entries_as_topk(length, group_size):
    from hmhi_cli.model.attention import _top_k_group_size, row_top_k

    assert _top_k_group_size(length, 50) == group_size
    torch.manual_seed(0)
    scores = torch.randn(3, 70, length)
    scores[0, 0, :64] = 100 + torch.arange(64.0)  # all winners in one place
    stride = length // (group_size or 1)
    group = scores[1, 1, ::stride]
    group.copy_(100 + torch.arange(float(group.numel())))  # a whole interleaved group among the winners
    values, indices = row_top_k(scores, 50)
    expected_values, expected_indices = scores.topk(50, dim=-1)
    assert torch.equal(values.sort(-1).values, expected_values.sort(-1).values)
    assert torch.equal(indices.sort(-1).values, expected_indices.sort(-1).values)


def conv3x3_case(batch, in_channels, out_channels, height, width, bias):
    """A seeded 3x3 convolution, an input, and the direct convolution's output (no autograd)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
    x = torch.randn(batch, in_channels, height, width)
    with torch.no_grad():
        return conv, x, conv(x)


@pytest.mark.parametrize("batch, in_channels, out_channels, height, width, bias", [
    (1, 128, 128, 16, 16, True), (2, 8, 5, 7, 10, True), (1, 3, 4, 1, 1, False), (1, 16, 16, 9, 4, True),
])
def test_winograd_equals_direct_convolution(batch, in_channels, out_channels, height, width, bias):
    from hmhi_cli.model.winograd import transform_filter, winograd_conv3x3

    conv, x, direct = conv3x3_case(batch, in_channels, out_channels, height, width, bias)
    with torch.no_grad():
        winograd = winograd_conv3x3(x, transform_filter(conv.weight), conv.bias)
        first = in_channels // 3
        parts = winograd_conv3x3([x[:, :first], x[:, first:]], transform_filter(conv.weight, (first, in_channels - first)),
                                 conv.bias)
    assert winograd.shape == direct.shape and winograd.is_contiguous(memory_format=torch.channels_last)
    atol = 2e-5 * direct.abs().max().item()
    torch.testing.assert_close(winograd, direct, rtol=0, atol=atol)
    torch.testing.assert_close(parts, direct, rtol=0, atol=atol)


def test_decoder_conv_uses_winograd_only_in_float32_inference():
    import hmhi_cli.model.decoder as decoder

    torch.manual_seed(0)
    conv = decoder.Conv(128, 128, 3)
    x = torch.randn(1, 128, 32, 32)
    with mock.patch.object(decoder, "winograd_conv3x3", wraps=decoder.winograd_conv3x3) as winograd:
        with torch.no_grad():
            conv(torch.randn(1, 128, 16, 16))  # too small to gain: direct
            fast = conv(x)
            from_parts = conv([x[:, :100], x[:, 100:]])
        assert winograd.call_count == 2
        direct = conv(x).detach()  # autograd on: direct convolution
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x)
        assert winograd.call_count == 2
        with torch.no_grad():
            conv.conv.weight.mul_(2)  # the cached filter transform must follow the weights
            doubled = conv(x)
            conv.conv.weight.div_(2)
            expected = F.relu(2 * conv.conv(x) - conv.conv.bias.view(1, -1, 1, 1))
        assert winograd.call_count == 3
    torch.testing.assert_close(fast, direct, rtol=0, atol=2e-5 * direct.abs().max().item())
    torch.testing.assert_close(from_parts, direct, rtol=0, atol=2e-5 * direct.abs().max().item())
    torch.testing.assert_close(doubled, expected, rtol=0, atol=2e-5 * expected.abs().max().item())


@pytest.mark.parametrize("shape, scale", [((1, 4, 16, 16), 2), ((2, 3, 7, 5), 4), ((1, 1, 1, 3), 2)])
def test_matrix_bicubic_upsampling_equals_interpolate(shape, scale):
    from hmhi_cli.model.ops import upsample_bicubic

    torch.manual_seed(0)
    x = torch.randn(shape)
    expected = F.interpolate(x, scale_factor=scale, mode="bicubic")
    torch.testing.assert_close(upsample_bicubic(x, scale), expected, rtol=0, atol=1e-5)
    channels_last = upsample_bicubic(x.contiguous(memory_format=torch.channels_last), scale)
    torch.testing.assert_close(channels_last, expected, rtol=0, atol=1e-5)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(upsample_bicubic(x, scale, fast=False), expected)


@pytest.mark.parametrize("batch, in_channels, out_channels, height, width, bias", [
    (1, 64, 1, 16, 16, True), (2, 70, 3, 5, 9, False),
])
def test_tap_sum_convolution_equals_direct(batch, in_channels, out_channels, height, width, bias):
    from hmhi_cli.model.ops import tap_sum_conv3x3

    conv, x, direct = conv3x3_case(batch, in_channels, out_channels, height, width, bias)
    with torch.no_grad():
        for layout in (torch.contiguous_format, torch.channels_last):
            torch.testing.assert_close(tap_sum_conv3x3(x.contiguous(memory_format=layout), conv.weight, conv.bias),
                                       direct, rtol=0, atol=1e-5 * direct.abs().max().item())


@pytest.mark.parametrize("bias", [True, False])
def test_fast_linear_equals_linear(bias):
    from hmhi_cli.model.ops import Linear

    torch.manual_seed(0)
    layer = Linear(24, 40, bias=bias)
    x = torch.randn(5, 3, 24).transpose(0, 1)  # not contiguous
    expected = F.linear(x, layer.weight, layer.bias)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected.detach(), rtol=1e-6, atol=1e-6)
    layer(x).sum().backward()  # autograd on: plain F.linear
    assert layer.weight.grad is not None
    assert list(dict(layer.named_parameters())) == (["weight", "bias"] if bias else ["weight"])


def test_fast_linear_relu_and_convolution_gelu_equal_their_plain_forms():
    from hmhi_cli.model.ops import Linear, conv2d_gelu

    torch.manual_seed(0)
    layer = Linear(16, 32)
    x = torch.randn(2, 7, 16)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1, groups=32)
    grid = torch.randn(2, 12 * 12, 32).transpose(1, 2).reshape(2, 32, 12, 12)  # channels-last, as in MixFFN
    with torch.no_grad():
        torch.testing.assert_close(layer(x, relu=True), F.relu(layer(x)), rtol=1e-6, atol=1e-6)
        fused = conv2d_gelu(grid, conv)
        torch.testing.assert_close(fused, F.gelu(conv(grid)), rtol=0, atol=1e-5)
        assert torch.equal(conv2d_gelu(grid, conv, fast=False), F.gelu(conv(grid)))
    conv2d_gelu(grid, conv).sum().backward()  # autograd on: the plain, differentiable path
    assert conv.weight.grad is not None


def test_fast_layer_norm_2d_equals_the_reference_formula():
    from hmhi_cli.model.memory import LayerNorm2d

    torch.manual_seed(0)
    norm = LayerNorm2d(12)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 12, 5, 7)
    fast = norm(x)
    norm.fast = False
    torch.testing.assert_close(fast, norm(x), rtol=1e-5, atol=1e-5)


def test_tables_first_built_while_segmenting_serve_training():
    """The cached constant tables (bicubic matrices, position tables) are built outside inference
    mode, so training after segmenting in one process does not fail on 'inference tensors'."""
    from hmhi_cli.model.ops import upsample_bicubic

    with torch.inference_mode():
        upsample_bicubic(torch.rand(1, 2, 7, 5), 4)
    x = torch.rand(1, 2, 7, 5, requires_grad=True)
    upsample_bicubic(x, 4).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
