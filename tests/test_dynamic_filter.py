"""Dynamic convolution / local filtering: per-sample filters, gradients, dataset, model surface."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convzoo
from convzoo.data.moving_digits import MovingDigits, MovingDigitsConfig, moving_digits
from convzoo.models.dynamic_filter import dynamic_conv2d, dynamic_local_filter

DFN = convzoo.list_models("dfn_*")


def test_dynamic_conv_uses_each_samples_own_filter():
    torch.manual_seed(0)
    x, w = torch.randn(3, 2, 7, 7), torch.randn(3, 4, 2, 3, 3)
    out = dynamic_conv2d(x, w, padding=1)
    for b in range(3):  # equals an ordinary conv of sample b with filter b, and nothing else
        torch.testing.assert_close(out[b : b + 1], F.conv2d(x[b : b + 1], w[b], padding=1))
    w2 = w.clone()
    w2[1] += 1.0  # changing sample 1's filter changes only sample 1's output
    out2 = dynamic_conv2d(x, w2, padding=1)
    assert torch.equal(out2[0], out[0]) and torch.equal(out2[2], out[2])
    assert not torch.allclose(out2[1], out[1])


def test_dynamic_local_filter_is_per_pixel_and_per_sample():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6)
    filters = torch.randn(2, 9, 5, 6)
    out = dynamic_local_filter(x, filters)
    padded = F.pad(x, (1, 1, 1, 1))
    for b, i, j in [(0, 0, 0), (1, 2, 3), (1, 4, 5)]:
        patch = padded[b, :, i : i + 3, j : j + 3].reshape(3, 9)
        torch.testing.assert_close(out[b, :, i, j], patch @ filters[b, :, i, j])
    # A one-hot filter at tap (dy, dx) = (0, +1) shifts the image left by one pixel.
    shift = torch.zeros(2, 9, 5, 6)
    shift[:, 5] = 1.0
    torch.testing.assert_close(dynamic_local_filter(x, shift)[..., :-1], x[..., 1:])
    filters2 = filters.clone()
    filters2[0] = 0.0
    out2 = dynamic_local_filter(x, filters2)
    assert torch.equal(out2[1], out[1]) and out2[0].abs().sum() == 0
    with pytest.raises(ValueError):
        dynamic_local_filter(x, torch.randn(2, 8, 5, 6))


@pytest.mark.parametrize("name", DFN)
def test_generated_filters_receive_gradients(name):
    torch.manual_seed(0)
    model = convzoo.create_model(name, widths=(4, 8), filter_size=3)
    x = torch.rand(2, 3, 8, 8)
    feats = model.forward_features(x)
    filters = model.head.generate(feats[:, :-1])
    filters.retain_grad()
    pred = model.head.apply_filters(feats[:, -1:], filters)
    torch.testing.assert_close(pred, model.forward_head(feats))
    pred.square().mean().backward()
    assert filters.grad is not None and filters.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", DFN)
def test_frame_prediction_surface(name):
    model = convzoo.create_model(name, widths=(4, 8), filter_size=3).eval()
    info = convzoo.model_info(name)
    assert info.dataset == "moving_digits" and info.num_classes == 0 and model.num_classes == 0
    x = torch.rand(3, 3, 10, 10)
    with torch.no_grad():
        out = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(3)])
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert out.shape == (3, 1, 10, 10)
    assert out.min() >= 0 and out.max() <= 1 + 1e-6  # softmax filters of a [0, 1] frame
    torch.testing.assert_close(out, single, rtol=1e-4, atol=1e-5)
    assert pooled.shape == (3, model.num_features)
    with pytest.raises(TypeError, match="no classifier"):
        model.reset_classifier(5)


def test_moving_digits_is_seeded_and_moves():
    cfg = MovingDigitsConfig(
        num_sequences=6, num_frames=3, image_size=24, digit_scale=2, max_speed=2
    )
    a, b = moving_digits(cfg), moving_digits(cfg)
    assert a.shape == (6, 3, 24, 24) and torch.equal(a, b)
    assert not torch.equal(a, moving_digits(MovingDigitsConfig(**{**cfg.__dict__, "seed": 1})))
    assert a.min() >= 0 and a.max() <= 1 and a.mean() > 0.02
    assert all(not torch.equal(a[i, 0], a[i, 1]) for i in range(6))  # every digit moves
    inputs, target = MovingDigits(cfg)[0]
    assert inputs.shape == (2, 24, 24) and target.shape == (1, 24, 24)
