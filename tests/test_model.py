"""The model against the reference implementation's fixture (../shared/parity)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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


def test_sparse_top_k_equals_masked_reference_values_and_gradients():
    from hmhi_cli.model.attention import QUERY_CHUNK, reference_attention, sparse_top_k_attention

    torch.manual_seed(0)
    q = torch.randn(2, 2, QUERY_CHUNK + 37, 16, requires_grad=True)
    k = torch.randn(2, 2, 300, 16, requires_grad=True)
    v = torch.randn(2, 2, 300, 8, requires_grad=True)
    fast = sparse_top_k_attention(q, k, v, top_k=50)
    reference = reference_attention(q, k, v, top_k=50)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    fast_grads = torch.autograd.grad(fast.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for ours, theirs in zip(fast_grads, reference_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
