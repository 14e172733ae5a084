"""U-Net architecture: paper geometry and size, shape helpers vs real forward passes, init."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from napari_unet.core.model import DEFAULT_CONFIG, UNet


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread is faster, and far faster when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def conv_params(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def paper_param_count(
    in_channels: int = 1, n_classes: int = 2, base: int = 64, depth: int = 4
) -> int:
    """Independent arithmetic for Ronneberger et al. Fig. 1 (3x3 convs, 2x2 up-convs, 1x1 head)."""
    widths = [base * 2**i for i in range(depth + 1)]
    total, cin = 0, in_channels
    for w in widths:  # contracting path and bottom: two 3x3 convs per level
        total += conv_params(cin, w, 3) + conv_params(w, w, 3)
        cin = w
    for lo, hi in zip(widths[-2::-1], widths[:0:-1], strict=True):  # expansive path
        total += conv_params(hi, lo, 2)  # 2x2 up-convolution halving the channels
        total += conv_params(2 * lo, lo, 3) + conv_params(lo, lo, 3)  # after concatenation
    return total + conv_params(widths[0], n_classes, 1)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_network_geometry_and_parameter_count():
    with torch.device("meta"):  # parameters without memory or initialisation
        model = UNet()
    with torch.no_grad():  # the geometry does not depend on the width: check a thin copy
        out = UNet(base_channels=1)(torch.zeros(1, 1, 572, 572))
    assert tuple(out.shape) == (1, 2, 388, 388)
    assert model.output_shape((572, 572)) == (388, 388)
    assert model.valid_input_shape((388, 388)) == (572, 572)
    assert model.context == 92 and model.shape_multiple == 16
    # 31,030,658 for the paper's Fig. 1 network. (The often quoted 31,031,685 is the Keras
    # zhixuhao/unet variant, which adds a 3x3 conv 64->2 and a sigmoid 1x1 conv 2->1.)
    assert paper_param_count() == 31_030_658
    assert n_params(model) == paper_param_count()
    keras_variant = paper_param_count() - conv_params(64, 2, 1) + conv_params(64, 2, 3)
    assert keras_variant + conv_params(2, 1, 1) == 31_031_685


@pytest.mark.parametrize("depth,base", [(1, 3), (2, 5), (3, 2), (5, 1)])
def test_parameter_count_other_sizes(depth, base):
    model = UNet(in_channels=3, n_classes=4, depth=depth, base_channels=base)
    assert n_params(model) == paper_param_count(3, 4, base, depth)


@given(
    depth=st.integers(1, 4),
    padding=st.sampled_from(["valid", "same"]),
    upsampling=st.sampled_from(["transpose", "bilinear"]),
    out_h=st.integers(1, 40),
    out_w=st.integers(1, 40),
)
def test_valid_input_shape_matches_real_forward(depth, padding, upsampling, out_h, out_w):
    model = UNet(depth=depth, base_channels=2, padding=padding, upsampling=upsampling)
    h, w = model.valid_input_shape((out_h, out_w))
    with torch.no_grad():
        y = model(torch.zeros(1, 1, h, w))
    assert tuple(y.shape[-2:]) == model.output_shape((h, w))
    assert y.shape[-2] >= out_h and y.shape[-1] >= out_w
    # minimal: the next smaller valid size gives a too small output (or is not processable)
    m = model.shape_multiple
    for smaller, target in ((h - m, out_h), (w - m, out_w)):
        out = model._out_len(smaller)
        assert out is None or out < target
    if padding == "valid":
        assert (h - y.shape[-2]) == (w - y.shape[-1]) == 2 * model.context
        # every valid size is the minimum plus a multiple of 2**depth, and nothing in between
        assert (h - model.min_input_size) % m == 0
        assert all(model._out_len(h + k) is None for k in range(1, m))
    else:
        assert (h, w) == tuple(y.shape[-2:]) and h % m == 0


def test_valid_context_formula_and_same_output_size():
    for depth in range(1, 6):
        assert UNet(depth=depth, base_channels=1).context == 6 * 2**depth - 4
        same = UNet(depth=depth, base_channels=1, padding="same")
        assert same.context % same.shape_multiple == 0
        assert same.context >= 6 * 2**depth - 4
        assert same.output_shape((2**depth * 3, 2**depth)) == (2**depth * 3, 2**depth)


def test_shift_equivariance_valid():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, norm="batch").eval()
    x = torch.randn(1, 1, 60, 60)
    m = model.shape_multiple
    with torch.no_grad():
        a = model(x[..., : 60 - m, : 60 - m])
        b = model(x[..., m:, m:])
        full = model(x)
    assert a.std() > 1e-3
    torch.testing.assert_close(a, full[..., : a.shape[-2], : a.shape[-1]], atol=1e-5, rtol=0)
    torch.testing.assert_close(b, full[..., m:, m:], atol=1e-5, rtol=0)


def test_too_small_and_invalid_sizes_raise():
    model = UNet(depth=2, base_channels=2)
    assert model.min_input_size == 44
    with pytest.raises(ValueError, match="field of view: need at least 44 px"):
        model(torch.zeros(1, 1, 43, 60))
    with pytest.raises(ValueError, match="nearest valid sizes: 44, 48"):
        model.output_shape((45, 60))
    with pytest.raises(ValueError, match="expects 1 channels"):
        model(torch.zeros(1, 3, 44, 44))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.zeros(1, 44, 44))
    with pytest.raises(ValueError, match="positive"):
        model.valid_input_shape((0, 5))
    same = UNet(depth=3, base_channels=2, padding="same")
    with pytest.raises(ValueError, match="nearest valid sizes: 16, 24"):
        same.output_shape((20, 16))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 0},
        {"depth": 2.0},
        {"base_channels": 0},
        {"in_channels": True},
        {"n_classes": 0},
        {"padding": "full"},
        {"norm": "instance"},
        {"upsampling": "nearest"},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        UNet(**kwargs)


def test_config_metadata_and_default():
    model = UNet(in_channels=2, n_classes=3, depth=2, base_channels=4, norm="group")
    assert UNet(**model.config).config == model.config
    assert json.loads(json.dumps(model.config)) == model.config
    assert model.metadata == {}
    other = UNet(depth=1, base_channels=1)
    model.metadata["x"] = 1
    assert other.metadata == {}  # not a shared default
    default = UNet(**DEFAULT_CONFIG)
    assert default.config == DEFAULT_CONFIG
    assert default.padding == "valid" and default.context >= 40  # enough context for cells


def test_norm_layers_and_bias():
    batch = UNet(depth=1, base_channels=4, norm="batch")
    group = UNet(depth=1, base_channels=6, norm="group")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules()) == 6
    assert all(
        m.bias is None
        for m in batch.modules()
        if type(m) is torch.nn.Conv2d and m.kernel_size == (3, 3)
    )
    gns = [m for m in group.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(gns) == 6 and all(m.num_channels % m.num_groups == 0 for m in gns)
    with torch.no_grad():
        out = group(torch.randn(2, 1, 20, 20))
    assert out.shape == (2, 2, 4, 4) and torch.isfinite(out).all()


def test_he_initialisation():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=16)
    conv = model.down[1][3]  # 32 -> 32, 3x3: fan_in 288, 9216 weights
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 288), rel=0.05)
    up = model.ups[0].conv  # 64 -> 32 transposed: each output sees 64 inputs
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    assert all(
        float(m.bias.detach().abs().max()) == 0
        for m in model.modules()
        if hasattr(m, "bias") and m.bias is not None
    )


def test_forward_backward_batchnorm_train_step():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, norm="batch", upsampling="bilinear")
    x = torch.randn(2, 1, *model.valid_input_shape((8, 8)))
    loss = model(x).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear"])
def test_channels_last_training_gives_the_same_gradients(upsampling):
    """The layout CPU training uses: same outputs and gradients, and the skip crops' gradients
    stay channels-last (a view's would not, slowing every later backward step)."""
    from napari_unet.core.device import place_for_training, release_to_cpu
    from napari_unet.core.model import _center_crop

    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, norm="batch", upsampling=upsampling)
    x = torch.randn(2, 1, *model.valid_input_shape((12, 12)))
    grads = []
    for place in (release_to_cpu, lambda m: place_for_training(m, "cpu")):
        place(model)
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        grads.append((out.detach().clone(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-4)
    for a, b in zip(grads[1][1], grads[0][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    skip = torch.randn(2, 4, 10, 10).contiguous(memory_format=torch.channels_last)
    skip.requires_grad_(True)
    crop = _center_crop(skip, 6, 8)
    torch.testing.assert_close(crop, skip[..., 2:8, 1:9])
    crop.sum().backward()
    assert skip.grad.is_contiguous(memory_format=torch.channels_last)
    assert skip.grad.sum() == 2 * 4 * 6 * 8
    with torch.no_grad():  # prediction: a view, no copy
        view = _center_crop(skip, 6, 8)
    assert view.untyped_storage().data_ptr() == skip.untyped_storage().data_ptr()


def test_folded_batchnorm_predicts_the_same():
    """BatchNorm folded into the convolutions: same eval output, no BatchNorm left."""
    from napari_unet.core.model import fold_batchnorm

    torch.manual_seed(0)
    model = UNet(in_channels=1, depth=2, base_channels=4, padding="valid", norm="batch")
    model.train()
    for _ in range(3):  # running statistics away from their initial values
        model(torch.randn(2, 1, 92, 92) * 3 + 1)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(1, 1, 92, 92)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched
