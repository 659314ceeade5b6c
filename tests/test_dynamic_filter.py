"""Dynamic convolution / local filtering: per-sample filters, gradients, dataset, model surface."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convzoo
from convzoo.data.moving_digits import MovingDigits, MovingDigitsConfig, moving_digits
from convzoo.models.dynamic_filter import DFNVideo, dynamic_conv2d, dynamic_local_filter

# The feed-forward models (ours); the paper's recurrent video model is tested further down.
DFN = [n for n in convzoo.list_models("dfn_*") if n != "dfn_video_moving_digits"]
VIDEO_TINY = {
    "encoder_widths": (4, 4, 6, 6),
    "hidden_width": 8,
    "decoder_widths": (6, 6, 4, 4),
    "head_width": 8,
    "filter_size": 3,
}


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


def test_video_model_has_the_released_layout():
    # dbbert/dfn models/model_bouncingMnistOriginal.py: 13 convs, in this order.
    model = convzoo.create_model("dfn_video_moving_digits", in_channels=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (1, 32, 3, 1), (32, 32, 3, 2), (32, 64, 3, 1), (64, 64, 3, 1), (64, 128, 3, 1),
        (128, 128, 3, 1), (128, 128, 3, 1),  # recurrence on the previous hidden state
        (128, 64, 3, 1), (64, 64, 3, 1), (64, 64, 3, 1), (64, 64, 3, 1), (64, 128, 1, 1),
        (128, 81, 1, 1),  # filter-generating layer: 9x9 taps
    ]  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == 637_361
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}
    assert all(c.bias.abs().sum() == 0 for c in convs)  # Lasagne Constant(0) biases


def _video(**overrides) -> DFNVideo:
    torch.manual_seed(0)
    return convzoo.create_model("dfn_video_moving_digits", **{**VIDEO_TINY, **overrides}).eval()


def test_video_model_remembers_earlier_frames():
    model = _video(in_channels=4)
    x = torch.rand(2, 4, 10, 10)
    changed = x.clone()
    changed[:, 0] = torch.rand(2, 10, 10)  # only the oldest frame differs
    with torch.no_grad():
        assert not torch.allclose(model(x), model(changed))
    # The frame count is free: the same weights read 2 or 4 frames.
    with torch.no_grad():
        assert _video(in_channels=2)(x[:, 2:]).shape == (2, 1, 10, 10)


def test_video_prediction_filters_the_last_frame():
    # Softmax filters: each output pixel is a convex combination of the last frame's 3x3
    # neighbourhood, so it lies between that neighbourhood's minimum and maximum.
    model = _video()
    x = torch.rand(3, 3, 9, 9)
    with torch.no_grad():
        out = model(x)
    last = x[:, -1:]
    hi = F.max_pool2d(F.pad(last, (1, 1, 1, 1)), 3, stride=1)
    lo = -F.max_pool2d(F.pad(-last, (1, 1, 1, 1), value=-2.0), 3, stride=1)
    assert (out <= hi + 1e-6).all() and (out >= torch.minimum(lo, torch.zeros(())) - 1e-6).all()


def test_rollout_feeds_predictions_back():
    model = _video()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        two = model.rollout(x, 2)
        torch.testing.assert_close(two[:, :1], model(x))
        # The second frame is the one-step prediction from the context plus the first prediction.
        longer = _video(in_channels=4)
        longer.load_state_dict(model.state_dict())
        torch.testing.assert_close(two[:, 1:], longer(torch.cat([x, two[:, :1]], 1)))
        assert two.shape == (2, 2, 8, 8)


def test_video_baseline_draws_the_frame():
    model = _video(filtering="none")
    with torch.no_grad():
        out = model(torch.rand(2, 3, 8, 8))
    assert out.shape == (2, 1, 8, 8) and (out > 0).all() and (out < 1).all()
