"""bioimage.io model packages (model format 0.5): export a trained UNet, and import it back.

A package is one zip file that other bioimage.io tools (bioimageio.core, deepImageJ, ilastik,
the bioimage.io website) can run without napari-unet::

    rdf.yaml                 the model description (axes, preprocessing, weights, citations, ...)
    README.md                how the model was trained and how to use it
    cover.png                the test input beside its predicted overlay
    test_input.npy           a raw test image, (batch, channel, y, x) float32
    test_output.npy          napari-unet's cell probabilities for it
    weights.pt               PyTorch state dict of the network
    unet_architecture.py     the network's source (``core/model.py`` + a softmax output)
    weights_torchscript.pt   the same network compiled to TorchScript (no Python source needed)

The network outputs softmax probabilities (background, cell). With valid padding an input
axis takes ``min + n * 2**depth`` pixels and the output is ``2 * model.context`` pixels smaller
(the spec's size reference with a negative offset); with same padding the output has the
input's size and ``model.context`` is declared as the halo. Preprocessing is the spec's
``scale_range`` with napari-unet's percentiles (1 / 99.8), per image and channel.

napari-unet's own settings (network config, object scale, calibrated threshold, channel
conversion, training settings, provenance) are kept under ``config.napari_unet`` of the
description, so :func:`load_package` rebuilds the same :class:`~.model.UNet` with the same
metadata. Writing needs no bioimageio package; the tests validate packages with
``bioimageio.core`` (the ``bmz`` extra).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import model as model_module
from .checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    model_from_dict,
    package_version,
    plain_metadata,
)
from .io import atomic_write
from .model import UNet
from .normalize import DEFAULT_PERCENTILES, model_percentiles

__all__ = [
    "DEFAULT_LICENSE",
    "RDF_NAME",
    "SPEC_FORMAT_VERSION",
    "UNET_CITATION",
    "export_package",
    "is_package",
    "load_any",
    "load_package",
]

#: bioimage.io model format written (0.5.x readers update it to their own 0.5 version)
SPEC_FORMAT_VERSION = "0.5.4"
RDF_NAME = "rdf.yaml"
DEFAULT_LICENSE = "CC-BY-4.0"
CONFIG_KEY = "napari_unet"
UNET_CITATION = {
    "text": "Ronneberger O, Fischer P, Brox T. U-Net: Convolutional Networks for Biomedical "
    "Image Segmentation. MICCAI 2015, LNCS 9351:234-241 (2015)",
    "doi": "10.1007/978-3-319-24574-4_28",
}
# Side (px) of the test output; the test input is the smallest valid size around it.
TEST_OUTPUT_SIDE = 192
INPUT_ID, OUTPUT_ID = "raw", "probabilities"
ARCHITECTURE_FILE, ARCHITECTURE_CALLABLE = "unet_architecture.py", "UNetProbabilities"
_FILES = {
    "weights": "weights.pt",
    "torchscript": "weights_torchscript.pt",
    "input": "test_input.npy",
    "output": "test_output.npy",
    "sample_input": "sample_input.tif",
    "sample_output": "sample_output.tif",
    "cover": "cover.png",
    "readme": "README.md",
}
_RDF_NAMES = (RDF_NAME, "bioimageio.yaml")
_AUTHOR_KEYS = ("name", "affiliation", "email", "orcid", "github_user")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_+\- ()]+")

_ARCHITECTURE_TAIL = f'''

class {ARCHITECTURE_CALLABLE}(UNet):
    """The napari-unet U-Net with softmax class probabilities as output (bioimage.io)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(super().forward(x), dim=1)
'''


# ----------------------------------------------------------------------------- TorchScript
class _UpStage(nn.Module):
    """One decoder level of a UNet (up-sampling, crop-and-concat, double conv), scriptable."""

    def __init__(self, up: nn.Module, conv: nn.Module, bilinear: bool, valid: bool) -> None:
        super().__init__()
        self.conv_up = up.conv
        self.conv = conv
        self.bilinear = bilinear
        self.valid = valid

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            if self.valid:
                x = x[:, :, 1:-1, 1:-1]
        x = self.conv_up(x)
        h, w = x.shape[-2], x.shape[-1]
        top, left = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
        skip = skip[:, :, top : top + h, left : left + w]
        return self.conv(torch.cat([skip, x], dim=1))


class _ScriptableUNet(nn.Module):
    """The same computation as ``UNet.forward`` + softmax, in a form TorchScript compiles."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.down = net.down
        self.bottom = net.bottom
        bilinear, valid = net.upsampling == "bilinear", net.padding == "valid"
        self.stages = nn.ModuleList(
            _UpStage(up, conv, bilinear, valid)
            for up, conv in zip(net.ups, net.up_convs, strict=True)
        )
        self.head = net.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        n = len(skips)
        for i, stage in enumerate(self.stages):
            x = stage(x, skips[n - 1 - i])
        return torch.softmax(self.head(x), dim=1)


def _cpu_copy(model: UNet) -> UNet:
    """A copy of ``model`` on the CPU in eval mode (the caller's model is left as it is)."""
    import copy

    return copy.deepcopy(model).cpu().eval()


def torchscript_bytes(model: UNet) -> bytes:
    """The model (eval mode, CPU, softmax output) compiled with ``torch.jit.script``, as bytes."""
    with warnings.catch_warnings():  # bioimage.io's "torchscript" weights need TorchScript,
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # deprecated in torch
        scripted = torch.jit.script(_ScriptableUNet(_cpu_copy(model)).eval())
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def architecture_source() -> str:
    """Source of the network for the state-dict weights: ``core/model.py`` + a softmax head."""
    return Path(model_module.__file__).read_text(encoding="utf-8") + _ARCHITECTURE_TAIL


def _state_dict_bytes(model: UNet) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- test data
def _synthetic_sample(model: UNet, side: int) -> np.ndarray:
    """Synthetic cells ``(C, side, side)`` at the model's object size (no data needed)."""
    from .scale import model_diameter
    from .synthetic import make_cells

    d = model_diameter(model)
    n_cells = max(3, int(0.25 * side * side / (d * d)))
    image, _ = make_cells((side, side), n_cells, seed=0, radius=(0.35 * d, 0.65 * d))
    channels = [image * (1.0 - 0.25 * c) + 0.1 * c for c in range(model.in_channels)]
    return np.stack(channels).astype(np.float32)


def _fit(plane: np.ndarray, side: int) -> np.ndarray:
    """Centre crop or mirror-pad the last two axes of ``plane`` to ``side`` x ``side``."""
    for axis in (-2, -1):
        n = plane.shape[axis]
        if n > side:
            start = (n - side) // 2
            plane = np.take(plane, np.arange(start, start + side), axis=axis)
        elif n < side:
            before = (side - n) // 2
            pad = [(0, 0)] * plane.ndim
            pad[axis] = (before, side - n - before)
            plane = np.pad(plane, pad, mode="symmetric")
    return plane


def _user_sample(
    model: UNet, image: Any, channel_axis: int | None, conversion: str | None, side: int
) -> np.ndarray:
    """A user image as ``(C, side, side)`` float32: prepared, first plane, at the model's scale."""
    from .scale import resample, scale_factor, scaled_shape
    from .segment import prepare_image

    arr, axis = prepare_image(image, channel_axis, model, conversion)
    keep = 3 if axis is not None else 2
    while arr.ndim > keep:
        arr = arr[0]
    arr = np.asarray(arr if axis is not None else arr[None], dtype=np.float32)
    factor = scale_factor(model, None)
    if factor != 1.0:
        arr = resample(arr, scaled_shape(arr.shape, factor))
    return np.ascontiguousarray(_fit(arr, side), dtype=np.float32)


def sample_side(model: UNet) -> int:
    """Side (px) of the square test input: a valid size with about ``TEST_OUTPUT_SIDE`` output."""
    side = max(model.valid_input_shape((TEST_OUTPUT_SIDE, TEST_OUTPUT_SIDE)))
    return max(side, _size_range(model)[0])


def reference_probabilities(model: UNet, image: np.ndarray) -> np.ndarray:
    """napari-unet's probabilities ``(n_classes, h, w)`` for a raw ``(C, H, W)`` input.

    The image is normalized with :func:`~.normalize.percentile_normalize` (the model's
    percentiles, per channel, over the whole image, as tiled prediction does) and the network
    is applied in eval mode on the CPU in float32, with no tiling: the package's own pipeline
    (``scale_range`` + weights) must reproduce this.
    """
    from .normalize import percentile_normalize

    low, high = model_percentiles(model.metadata)
    x = percentile_normalize(image, low, high, channel_axis=0)
    net = _cpu_copy(model)
    with torch.inference_mode():
        logits = net(torch.from_numpy(np.ascontiguousarray(x))[None].float())
        return torch.softmax(logits, dim=1)[0].numpy().astype(np.float32)


def _cover_png(image: np.ndarray, probs: np.ndarray, threshold: float) -> bytes:
    """PNG of the input (cropped to the output's field) beside its overlay: cells in magenta."""
    import imageio.v3 as iio

    from .normalize import percentile_normalize

    h, w = probs.shape[-2:]
    top, left = (image.shape[-2] - h) // 2, (image.shape[-1] - w) // 2
    crop = image[:, top : top + h, left : left + w]
    shown = np.clip(percentile_normalize(crop, *DEFAULT_PERCENTILES, channel_axis=0), 0.0, 1.0)
    rgb = np.moveaxis(shown[:3] if shown.shape[0] >= 3 else shown[:1].repeat(3, 0), 0, -1)
    cell = 1.0 - probs[0] if probs.shape[0] > 1 else probs[0]
    alpha = (0.55 * np.clip(cell, 0.0, 1.0))[..., None]
    overlay = (1.0 - alpha) * rgb + alpha * np.array([1.0, 0.1, 0.9])
    edge = (cell > threshold) & ~_eroded(cell > threshold)
    overlay[edge] = (1.0, 1.0, 0.2)
    both = np.concatenate([rgb, overlay], axis=1)
    return iio.imwrite("<bytes>", (np.clip(both, 0.0, 1.0) * 255).astype(np.uint8),
                       extension=".png")


def _eroded(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.binary_erosion(mask, iterations=1, border_value=1)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _tif_bytes(array: np.ndarray) -> bytes:
    """A TIFF of ``array``: the spec's sample tensors, for people and viewers (not .npy)."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array), photometric="minisblack")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- description
def _size_range(model: UNet) -> tuple[int, int]:
    """``(min, step)`` of the valid input sizes along each spatial axis."""
    m = model.shape_multiple
    if model.padding == "valid":
        return model.min_input_size, m
    return 2 * model.context + m, m  # the output must be larger than its halo on both sides


def _channel_names(n: int, kind: str) -> list[str]:
    if kind == "output" and n in (2, 3):  # 3: border-aware (background, interior, border)
        return ["background", "cell", "border"][:n]
    return [f"{'class' if kind == 'output' else 'channel'}{i}" for i in range(n)]


def _tensor_descr(kind: str, tensor_id: str, description: str, n_channels: int,
                  space: list[dict[str, Any]], data: dict[str, Any]) -> dict[str, Any]:
    """The description of the ``kind`` ("input" or "output") tensor, its test files named."""
    channels = {"type": "channel", "channel_names": _channel_names(n_channels, kind)}
    return {
        "id": tensor_id,
        "description": description,
        "axes": [{"type": "batch"}, channels, *space],
        "data": data,
        "test_tensor": {"source": _FILES[kind]},
        "sample_tensor": {"source": _FILES[f"sample_{kind}"]},
    }


def _input_descr(model: UNet, low: float, high: float) -> dict[str, Any]:
    smallest, step = _size_range(model)
    space = [{"type": "space", "id": a, "size": {"min": smallest, "step": step}} for a in "yx"]
    descr = _tensor_descr("input", INPUT_ID, "raw image; objects at the size given in the README",
                          model.in_channels, space, {"type": "float32"})
    scale = {"axes": ["y", "x"], "min_percentile": low, "max_percentile": high}
    descr["preprocessing"] = [{"id": "scale_range", "kwargs": scale}]
    return descr


def _output_descr(model: UNet) -> dict[str, Any]:
    def axis(a: str) -> dict[str, Any]:
        ref: dict[str, Any] = {"tensor_id": INPUT_ID, "axis_id": a}
        if model.padding == "valid":  # the model itself crops its context: an offset
            return {"type": "space", "id": a, "size": {**ref, "offset": -2 * model.context}}
        return {"type": "space", "id": a, "size": ref, "halo": model.context}

    return _tensor_descr(
        "output", OUTPUT_ID,
        "softmax class probabilities; 1 - background is the cell probability",
        model.n_classes, [axis("y"), axis("x")], {"type": "float32", "range": [0.0, 1.0]})


def _weights_descr(model: UNet, sha: dict[str, str]) -> dict[str, Any]:
    version = torch.__version__.split("+")[0]
    return {
        "pytorch_state_dict": {
            "source": _FILES["weights"],
            "sha256": sha[_FILES["weights"]],
            "architecture": {
                "source": ARCHITECTURE_FILE,
                "sha256": sha[ARCHITECTURE_FILE],
                "callable": ARCHITECTURE_CALLABLE,
                "kwargs": dict(model.config),
            },
            "pytorch_version": version,
        },
        "torchscript": {
            "source": _FILES["torchscript"],
            "sha256": sha[_FILES["torchscript"]],
            "pytorch_version": version,
            "parent": "pytorch_state_dict",
        },
    }


def _authors(model: UNet, authors: Sequence[str] | None) -> list[dict[str, Any]]:
    given: Any = list(authors) if authors else model.metadata.get("authors")
    if isinstance(given, str):
        given = [given]
    out = []
    for a in given or []:
        entry = {"name": a} if not isinstance(a, dict) else a
        entry = {k: str(v) for k, v in entry.items() if k in _AUTHOR_KEYS and v}
        if entry.get("name"):
            entry["name"] = entry["name"].replace("/", "-")  # the spec refuses slashes in names
            out.append(entry)
    return out or [{"name": "napari-unet user"}]


def _citations(model: UNet) -> list[dict[str, str]]:
    """The U-Net paper, and the training data's paper when the provenance gives its DOI."""
    cites = [dict(UNET_CITATION)]
    data = (model.metadata.get("provenance") or {}).get("data") or {}
    text = data.get("citation") if isinstance(data, dict) else None
    match = re.search(r"doi:\s*(10\.\S+?)\.?$", str(text or ""))
    if match:
        citation = str(text).split(" doi:")[0].strip().rstrip(".")
        cites.append({"text": citation, "doi": match.group(1)})
    return cites


def package_name(model: UNet, name: str | None = None, fallback: str = "model") -> str:
    """A bioimage.io model name (5-64 letters, digits, ``_+-()`` and spaces)."""
    prov = model.metadata.get("provenance") or {}
    raw = name or model.metadata.get("name") or prov.get("name") or fallback
    clean = " ".join(_NAME_CHARS.sub(" ", str(raw)).split())
    if not name or len(clean) < 5:
        clean = f"napari-unet {clean}"
    return clean[:64].strip()


def _tags(model: UNet) -> list[str]:
    tags = ["unet", "unet2d", "pytorch", "2d", "segmentation", "cell-segmentation", "napari-unet"]
    words = json.dumps(model.metadata.get("provenance") or {}).lower()
    tags += [t for t in ("nuclei", "fluorescence", "phase-contrast") if t in words]
    return tags


def _napari_config(model: UNet) -> dict[str, Any]:
    """napari-unet's own fields: what :func:`load_package` needs to rebuild the model."""
    metadata = json.loads(json.dumps(plain_metadata(dict(model.metadata))))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_unet_version": package_version(),
        "config": plain_metadata(model.config, "config"),
        "metadata": metadata,
        "state_dict": _FILES["weights"],
    }


def build_rdf(
    model: UNet, sha: dict[str, str], *, name: str, authors: list[dict[str, Any]], license: str
) -> dict[str, Any]:
    """The bioimage.io model description (``rdf.yaml`` content) of ``model``'s package."""
    from .segment import model_threshold

    low, high = model_percentiles(model.metadata)
    return {
        "type": "model",
        "format_version": SPEC_FORMAT_VERSION,
        "name": name,
        "description": (
            "U-Net (Ronneberger et al. 2015) for cell segmentation trained with napari-unet: "
            "class probabilities (background, cell[, border]); threshold the cell probability "
            f"(1 - background) at {model_threshold(model):.3g} and split touching cells for "
            "instances (README)."
        ),
        "authors": authors,
        "cite": _citations(model),
        "license": license,
        "tags": _tags(model),
        "documentation": _FILES["readme"],
        "covers": [_FILES["cover"]],
        "inputs": [_input_descr(model, low, high)],
        "outputs": [_output_descr(model)],
        "weights": _weights_descr(model, sha),
        "config": {CONFIG_KEY: _napari_config(model)},
    }


# ----------------------------------------------------------------------------- README
def _items(values: dict[str, Any], skip: Sequence[str] = ()) -> list[str]:
    """Markdown list lines ``- key: value`` of a metadata dict (nested dicts as JSON)."""
    lines = []
    for key, value in values.items():
        if key in skip or value is None:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        lines.append(f"- {key}: {text}")
    return lines


def _readme_use(model: UNet) -> list[str]:
    from .instances import DEFAULT_MIN_SIZE
    from .scale import data_diameter, model_diameter
    from .segment import model_threshold

    meta = model.metadata
    norm = meta.get("normalization") or {}
    smallest, step = _size_range(model)
    c = model.context
    crop = (
        f"{2 * c} px smaller than the input per axis (valid padding: {c} px of context are "
        "used up on each side); predict overlapping tiles (overlap-tile) to cover an image"
        if model.padding == "valid"
        else f"the input's size; the {c} px halo on each side should be cropped"
    )
    split = (
        "from the seeds where `cell` (the interior) > 0.5" if model.n_classes >= 3
        else "on the distance transform"
    )
    data = data_diameter(model)
    seen = f", {data:.3g} px in the training images" if data else ""
    lines = [
        "## Use",
        "",
        f"- Input `{INPUT_ID}`: (batch, channel, y, x) with {model.in_channels} channel(s); "
        f"each spatial axis {smallest} + n x {step} px.",
        f"- Preprocessing: the {norm.get('low', DEFAULT_PERCENTILES[0])} / "
        f"{norm.get('high', DEFAULT_PERCENTILES[1])} percentiles "
        "of each image and channel become 0 / 1 (`scale_range`).",
        f"- Output `{OUTPUT_ID}`: softmax probabilities (batch, class, y, x), {crop}.",
        f"- Object size: the network saw objects about {model_diameter(model):.3g} px wide"
        f"{seen}; resample images by (that size / the objects' size) before predicting.",
        f"- Instances: threshold the cell probability (1 - `background`) at "
        f"{model_threshold(model):.3g}, fill holes, drop objects under {DEFAULT_MIN_SIZE} px (at "
        f"the network's scale) and split touching cells by a watershed {split}.",
        "- With napari-unet: `napari-unet predict PACKAGE.zip IMAGES --out RESULTS` does all "
        "of this, with the object size and threshold stored in this package.",
    ]
    if model.in_channels == 1:
        conversion = meta.get("channel_conversion") or "hematoxylin"
        lines.append(f"- Colour images: napari-unet converts them to one channel ({conversion}).")
    return lines


def _readme_training(model: UNet) -> list[str]:
    meta = model.metadata
    training = meta.get("training")
    lines = ["## Training", "", f"- Network: {json.dumps(model.config)}"]
    if not training:
        lines.append("- Not trained with napari-unet (no training settings recorded).")
    else:
        labels = "complete labels (0 = background)" if training.get("dense") else (
            "painted labels (0 = unlabeled, 1 = background, >= 2 cells)")
        done = training.get("steps_completed", training.get("steps"))
        lines += [
            f"- Last training run: {done} steps on {training.get('n_images', '?')} image(s), "
            f"{labels}.",
            "- Settings of that run:",
            *("  " + line for line in _items(training, ("dense", "steps_completed"))),
        ]
    if meta.get("scale"):
        lines.append(f"- Object scale (`metadata.scale`): {json.dumps(meta['scale'])}")
    if meta.get("threshold") is not None:
        lines.append(f"- Calibrated threshold (`metadata.threshold`): {meta['threshold']:.4g}")
    prov = meta.get("provenance")
    if isinstance(prov, dict) and prov:
        lines += ["- Provenance (starting model):", *("  " + x for x in _items(prov, ("stages",)))]
    return lines


def _readme_validation(model: UNet, sample_note: str) -> list[str]:
    prov = model.metadata.get("provenance") or {}
    metrics = {k: v for k, v in prov.items() if str(k).startswith("metrics")}
    lines = [
        "## Validation",
        "",
        f"- Test tensors: {sample_note}; the test output is napari-unet's own prediction "
        "(its percentile normalization and the network in float32 on the CPU).",
    ]
    if metrics:
        lines += _items(metrics)
    else:
        lines.append(
            "- No validation scores were recorded; measure them on annotated images of your "
            "own (`napari-unet predict`, then `napari-unet evaluate`)."
        )
    return lines


def readme_text(model: UNet, name: str, license: str, sample_note: str) -> str:
    """The package's README.md: what the model is, how to use it and how it was trained."""
    lines = [
        f"# {name}",
        "",
        "A U-Net (Ronneberger, Fischer & Brox 2015) for cell segmentation in 2D microscopy "
        f"images, trained and exported with napari-unet {package_version()}.",
        "",
        *_readme_use(model),
        "",
        *_readme_training(model),
        "",
        *_readme_validation(model, sample_note),
        "",
        "## Citation",
        "",
        *(f"- {c['text']}. doi:{c['doi']}" for c in _citations(model)),
        "",
        "## License",
        "",
        f"{license} (the weights and this description).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- export
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _package_files(
    model: UNet, sample: Any, channel_axis: int | None, conversion: str | None
) -> tuple[dict[str, bytes], str]:
    """The package's binary files (weights, test tensors, cover), and a note on the sample."""
    from .segment import model_threshold

    side = sample_side(model)
    if sample is None:
        image = _synthetic_sample(model, side)
        note = "synthetic cells (napari_unet.core.synthetic.make_cells) at the model's scale"
    else:
        image = _user_sample(model, sample, channel_axis, conversion, side)
        note = "a crop of the image given at export, at the model's scale"
    probs = reference_probabilities(model, image)
    files = {
        _FILES["weights"]: _state_dict_bytes(model),
        ARCHITECTURE_FILE: architecture_source().encode("utf-8"),
        _FILES["torchscript"]: torchscript_bytes(model),
        _FILES["input"]: _npy_bytes(image[None]),
        _FILES["output"]: _npy_bytes(probs[None]),
        _FILES["sample_input"]: _tif_bytes(image[None]),
        _FILES["sample_output"]: _tif_bytes(probs[None]),
        _FILES["cover"]: _cover_png(image, probs, model_threshold(model)),
    }
    return files, note


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def export_package(
    model: UNet,
    path: str | os.PathLike,
    *,
    sample: Any = None,
    channel_axis: int | None = None,
    conversion: str | None = None,
    name: str | None = None,
    authors: Sequence[str] | None = None,
    license: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bioimage.io model package (zip) at ``path``, atomically.

    ``sample``: an image for the test tensors and the cover (default: synthetic cells at the
    model's object size). ``authors`` and ``license`` default to ``model.metadata``'s, else
    a placeholder author and ``DEFAULT_LICENSE``. FileExistsError if ``path`` exists and not
    ``overwrite``; ValueError for a model or sample that cannot be exported.
    """
    import yaml

    if not isinstance(model, UNet):
        raise ValueError(f"can only export a napari_unet UNet, got {type(model).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as model.zip")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; not overwriting it")
    files, note = _package_files(model, sample, channel_axis, conversion)
    title = package_name(model, name, path.stem)
    lic = str(license or model.metadata.get("license") or DEFAULT_LICENSE)
    files[_FILES["readme"]] = readme_text(model, title, lic, note).encode("utf-8")
    sha = {k: _sha256(v) for k, v in files.items()}
    rdf = build_rdf(model, sha, name=title, authors=_authors(model, authors), license=lic)
    text = yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True, width=100)
    files = {RDF_NAME: text.encode("utf-8"), **files}
    return atomic_write(path, lambda tmp: _write_zip(tmp, files), overwrite=overwrite)


# ----------------------------------------------------------------------------- import
def _reader(path: Path) -> tuple[Callable[[str], bytes], list[str]]:
    """``(read(name) -> bytes, names)`` for a package zip or an unpacked package folder."""
    if path.is_dir() or path.suffix.lower() in (".yaml", ".yml"):
        folder = path if path.is_dir() else path.parent
        names = [p.name for p in folder.iterdir() if p.is_file()]
        return (lambda name: (folder / name).read_bytes()), names
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"{path} is not a bioimage.io model package (not a readable zip file: {error})"
        ) from None

    def read(name: str) -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)

    return read, names


def _rdf_name(path: Path, names: list[str]) -> str | None:
    if path.suffix.lower() in (".yaml", ".yml"):
        return path.name
    found = [n for n in names if n in _RDF_NAMES or n.endswith(".bioimageio.yaml")]
    return found[0] if found else None


def is_package(path: str | os.PathLike) -> bool:
    """True for a bioimage.io package: a zip (or folder) holding ``rdf.yaml`` / bioimageio.yaml."""
    path = Path(path)
    if not path.exists():
        return False
    if path.is_dir():
        return any((path / n).is_file() for n in _RDF_NAMES)
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return _rdf_name(path, archive.namelist()) is not None
    except (zipfile.BadZipFile, OSError):
        return False


def _read_rdf(path: Path) -> tuple[dict[str, Any], Callable[[str], bytes], list[str]]:
    import yaml

    read, names = _reader(path)
    rdf_name = _rdf_name(path, names)
    if rdf_name is None:
        raise CheckpointError(
            f"{path} is not a bioimage.io model package: it holds no {RDF_NAME}"
        )
    try:
        rdf = yaml.safe_load(read(rdf_name).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, OSError) as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: unreadable {rdf_name}: {reason}") from None
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise CheckpointError(f"{path}: {rdf_name} does not describe a model")
    return rdf, read, names


def _napari_entry(rdf: dict[str, Any], source: Path) -> dict[str, Any]:
    entry = (rdf.get("config") or {}).get(CONFIG_KEY)
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise CheckpointError(
            f"{source} is a bioimage.io model package ({rdf.get('name', 'unnamed')!r}) that was "
            f"not exported by napari-unet (no config.{CONFIG_KEY}); napari-unet can only load "
            "its own U-Net packages"
        )
    return entry


def _weights_source(rdf: dict[str, Any], entry: dict[str, Any]) -> tuple[str, str | None]:
    """The state-dict file of the package and its expected sha256 (None if not given)."""
    weights = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
    source = weights.get("source") or entry.get("state_dict") or _FILES["weights"]
    source = str(source.get("source") if isinstance(source, dict) else source)
    return source, weights.get("sha256")


def load_package(path: str | os.PathLike, map_location: Any = "cpu") -> UNet:
    """Load a package written by :func:`export_package` back into a UNet, with its metadata.

    Reads napari-unet's config from the description and the state-dict weights (safely,
    ``weights_only=True``). FileNotFoundError for a missing path; :class:`CheckpointError` (a
    ValueError) for a broken package, or one of another tool or network.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model package not found: {path}")
    rdf, read, names = _read_rdf(path)
    entry = _napari_entry(rdf, path)
    source, expected = _weights_source(rdf, entry)
    if source not in names:
        raise CheckpointError(f"{path}: the weights file {source} is missing from the package")
    data = read(source)
    if expected and _sha256(data) != str(expected):
        raise CheckpointError(f"{path}: {source} is corrupt (its sha256 does not match)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign weights
        reason = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: unreadable weights {source}: {reason}") from None
    checkpoint = {
        "format": FORMAT,
        "format_version": entry.get("format_version"),
        "napari_unet_version": entry.get("napari_unet_version"),
        "config": entry.get("config"),
        "metadata": entry.get("metadata") or {},
        "state_dict": state,
    }
    return model_from_dict(checkpoint, str(path), map_location)


def load_any(path: str | os.PathLike, map_location: Any = "cpu") -> UNet:
    """A napari-unet checkpoint (``.pt``) or a package of ours (``.zip``, folder): one loader.

    For every place that lets the user pick a model file (CLI, widgets, dask workers).
    """
    path = Path(path)
    if path.suffix.lower() == ".zip" or is_package(path):
        return load_package(path, map_location)
    from .checkpoint import load_model

    return load_model(path, map_location)
