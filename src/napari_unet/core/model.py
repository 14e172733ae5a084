"""The U-Net of Ronneberger, Fischer & Brox (MICCAI 2015), with a few optional modern switches.

Each level has two 3x3 convolutions + ReLU (unpadded for ``padding="valid"`` as in the paper),
2x2 max pooling goes down, a 2x2 transposed convolution (or bilinear upsampling + 1x1 conv) goes
up, the encoder features are centre-cropped and concatenated, and a final 1x1 convolution gives
``n_classes`` logits. ``UNet()`` with its defaults (1 channel in, 2 classes, depth 4, 64 base
channels, valid padding, no normalization, transposed convolutions) is the paper network:
572x572 in -> 388x388 out, 31,030,658 parameters (the often quoted 31,031,685 is the Keras
zhixuhao/unet variant, which ends with an extra 3x3 conv 64->2 and a 1x1 conv 2->1).

Geometry (valid padding): an input size is valid when every size before a pooling is even and
every feature map stays non-empty; the output is ``context`` pixels smaller on each side
(92 for depth 4: 572 -> 388). Shifting the input by a multiple of ``shape_multiple`` (2**depth)
shifts the output by the same amount, which is what makes overlap-tile prediction exact.
With ``padding="same"`` the input must be a multiple of ``shape_multiple`` and the output has the
input size; ``context`` is then the halo that tiling keeps around each tile so that the kept centre
does not see the zero padding of the tile border (the receptive-field radius, plus the rounding of
the pooling blocks, rounded up to a multiple of ``shape_multiple``).

``DEFAULT_CONFIG`` is the interactive CPU default (depth 3, 16 base channels, valid padding, batch
norm, transposed convolutions): well under a second per training step on a CPU, with a context of
44 px per side, more than the cells this plugin targets (benchmarks/README.md, "Model").
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_CONFIG: dict[str, Any] = {
    "in_channels": 1,
    "n_classes": 2,
    "depth": 3,
    "base_channels": 16,
    "padding": "valid",
    "norm": "batch",
    "upsampling": "transpose",
}

_PADDINGS = ("valid", "same")
_NORMS = (None, "batch", "group")
_UPSAMPLINGS = ("transpose", "bilinear")


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _norm_layer(norm: str | None, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional normalization and) ReLU."""

    def __init__(self, cin: int, cout: int, padding: int, norm: str | None) -> None:
        bias = norm is None  # a bias before a normalization layer is redundant
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=padding, bias=bias),
            _norm_layer(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=padding, bias=bias),
            _norm_layer(norm, cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Doubles the resolution and halves the channels.

    ``transpose``: 2x2 transposed convolution with stride 2 (the paper's "up-convolution").
    ``bilinear``: bilinear x2 upsampling, then a 1x1 convolution. With valid padding the bilinear
    result is cropped by one pixel on each side so that no output depends on edge clamping
    (keeps the network exactly shift-equivariant, which exact tiling relies on).
    """

    def __init__(self, cin: int, cout: int, mode: str, valid: bool) -> None:
        super().__init__()
        self.mode = mode
        self.valid = valid
        if mode == "transpose":
            self.conv: nn.Module = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        else:
            self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "transpose":
            return self.conv(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        if self.valid:
            x = _center_crop(x, x.shape[-2] - 2, x.shape[-1] - 2)
        return self.conv(x)


def _center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centre ``h x w`` of ``x``: a view, or when ``x`` needs a gradient a negative
    ``F.pad``, whose gradient keeps ``x``'s memory layout (a view's gradient is built in the
    default layout, which slows every later backward step of a channels-last network)."""
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    if x.requires_grad and torch.is_grad_enabled():
        bottom, right = x.shape[-2] - h - top, x.shape[-1] - w - left
        return F.pad(x, (-left, -right, -top, -bottom))
    return x[..., top : top + h, left : left + w]


class UNet(nn.Module):
    """U-Net for semantic segmentation; ``forward`` returns logits ``(N, n_classes, h, w)``.

    See the module docstring for the geometry. Sizes that the network cannot process exactly
    (odd sizes before a pooling, or too small) raise ``ValueError`` rather than being silently
    floored; use :meth:`valid_input_shape` to pick sizes.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        padding: str = "valid",
        norm: str | None = None,
        upsampling: str = "transpose",
    ) -> None:
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("n_classes", n_classes, 1)
        _check_int("depth", depth, 1, 8)
        _check_int("base_channels", base_channels, 1)
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        if upsampling not in _UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {_UPSAMPLINGS}, got {upsampling!r}")
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.depth = depth
        self.base_channels = base_channels
        self.padding = padding
        self.norm = norm
        self.upsampling = upsampling
        self.metadata: dict[str, Any] = {}

        pad = 1 if padding == "same" else 0
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths[:-1]:
            self.down.append(DoubleConv(cin, w, pad, norm))
            cin = w
        self.bottom = DoubleConv(widths[-2], widths[-1], pad, norm)
        self.ups = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(Up(widths[level + 1], widths[level], upsampling, padding == "valid"))
            self.up_convs.append(DoubleConv(2 * widths[level], widths[level], pad, norm))
        self.head = nn.Conv2d(widths[0], n_classes, 1)
        self._init_weights()

        self._min_input = self._find_min_input()
        self._valid_context = self._geometry_context()

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        """He et al. initialisation, std = sqrt(2 / fan_in), as in the paper; zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and m.weight.is_meta:
                continue  # shapes only (e.g. FLOP counting): random init would be wasted work
            if isinstance(m, nn.ConvTranspose2d):
                # each output pixel of a stride-2, 2x2 up-convolution sees exactly one input pixel
                # per channel, so fan_in = in_channels (torch's fan computation assumes overlap)
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / m.weight.shape[0]))
            elif isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # -------------------------------------------------------------- geometry
    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-able); ``UNet(**model.config)`` rebuilds the architecture."""
        return {
            "in_channels": self.in_channels,
            "n_classes": self.n_classes,
            "depth": self.depth,
            "base_channels": self.base_channels,
            "padding": self.padding,
            "norm": self.norm,
            "upsampling": self.upsampling,
        }

    @property
    def shape_multiple(self) -> int:
        """Shift granularity: 2**depth (valid inputs differ by multiples of it)."""
        return 2**self.depth

    @property
    def context(self) -> int:
        """Valid padding: pixels lost on each side. Same padding: tiling halo (see module doc)."""
        if self.padding == "valid":
            return self._valid_context
        m = self.shape_multiple
        radius = self._valid_context + m  # + rounding of the pooling blocks (< 2**depth)
        return -(-radius // m) * m

    def _out_len(self, n: int) -> int | None:
        """Output length along one axis for input length ``n``; None when not processable."""
        if n < 1:
            return None
        if self.padding == "same":
            s = n
            for _ in range(self.depth):
                if s % 2:
                    return None
                s //= 2
            return n if s >= 1 else None
        s = n
        for _ in range(self.depth):
            s -= 4
            if s < 2 or s % 2:
                return None
            s //= 2
        s -= 4
        if s < 1:
            return None
        for _ in range(self.depth):
            s = 2 * s - (2 if self.upsampling == "bilinear" else 0) - 4
            if s < 1:
                return None
        return s

    def _find_min_input(self) -> int:
        limit = 16 * self.shape_multiple * (self.depth + 2)
        for n in range(1, limit):
            if self._out_len(n) is not None:
                return n
        raise AssertionError("no valid input size found")  # pragma: no cover

    def _geometry_context(self) -> int:
        if self.padding == "same":
            # the same stack of convolutions without padding defines the receptive field
            cfg = dict(self.config, padding="valid", in_channels=1, n_classes=1, base_channels=1)
            return UNet(**cfg).context
        n = self._min_input
        diff = n - self._out_len(n)  # type: ignore[operator]
        return diff // 2

    def _check_len(self, n: int, axis: str) -> int:
        out = self._out_len(n)
        if out is not None:
            return out
        if n < self._min_input:
            raise ValueError(
                f"image smaller than the network's field of view: need at least "
                f"{self._min_input} px, got {n} px along {axis}"
            )
        below = self._valid_len_at_most(n)
        above = self._valid_len(n)
        raise ValueError(
            f"input size {n} along {axis} does not fit this network "
            f"({self.padding} padding, depth {self.depth}); nearest valid sizes: {below}, {above}"
        )

    def _valid_len(self, n: int) -> int:
        """Smallest valid input length >= n."""
        m = self.shape_multiple
        n = max(n, self._min_input)
        return self._min_input + -(-(n - self._min_input) // m) * m

    def _valid_len_at_most(self, n: int) -> int:
        """Largest valid input length <= n (at least the minimum input)."""
        m = self.shape_multiple
        if n <= self._min_input:
            return self._min_input
        return self._min_input + (n - self._min_input) // m * m

    def _out_offset(self) -> int:
        """Input pixels between an input's origin and its output's origin."""
        return self._valid_context if self.padding == "valid" else 0

    def output_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Output ``(h, w)`` for an input ``(h, w)``; ValueError if the size is not valid."""
        h, w = (int(v) for v in shape[-2:])
        return self._check_len(h, "y"), self._check_len(w, "x")

    def valid_input_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Smallest valid input ``(h, w)`` whose output is at least ``shape``."""
        h, w = (int(v) for v in shape[-2:])
        if h < 1 or w < 1:
            raise ValueError(f"output shape must be positive, got {tuple(shape)}")
        grow = 2 * self._out_offset()
        return self._valid_len(h + grow), self._valid_len(w + grow)

    @property
    def min_input_size(self) -> int:
        """Smallest input size (per axis) that the network can process."""
        return self._min_input

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"model expects {self.in_channels} channels, input has {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        self.output_shape((x.shape[-2], x.shape[-1]))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, conv, skip in zip(self.ups, self.up_convs, reversed(skips), strict=True):
            x = up(x)
            skip = _center_crop(skip, x.shape[-2], x.shape[-1])
            x = conv(torch.cat([skip, x], dim=1))
        return self.head(x)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def fold_batchnorm(model: UNet) -> UNet:
    """An eval-mode copy of ``model`` with each BatchNorm folded into its convolution.

    Prediction then skips the normalization pass over every feature map (Ioffe & Szegedy,
    2015: at inference a BatchNorm is an affine map, which a preceding convolution absorbs).
    A model without BatchNorm is returned as an eval-mode copy.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for block in folded.modules():
        if not isinstance(block, DoubleConv):
            continue
        for i in (0, 3):
            conv, norm = block[i], block[i + 1]
            if isinstance(norm, nn.BatchNorm2d):
                block[i] = fuse_conv_bn_eval(conv, norm)
                block[i + 1] = nn.Identity()
    return folded


def train_mode(model: torch.nn.Module, freeze_norm_stats: bool) -> None:
    """Put ``model`` in training mode; with ``freeze_norm_stats`` its BatchNorm layers keep
    their running statistics (the affine weights still learn)."""
    model.train()
    if freeze_norm_stats:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def is_trained(model: torch.nn.Module) -> bool:
    """True for a model that was trained before (its metadata records a training run)."""
    metadata = getattr(model, "metadata", None)
    return isinstance(metadata, dict) and "training" in metadata
