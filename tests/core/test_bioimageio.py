"""bioimage.io packages: bioimageio.core's test passes; import predicts like the checkpoint."""

from __future__ import annotations

import copy
import functools
import gc
import hashlib
import io
import json
import warnings
import zipfile

import numpy as np
import pytest
import torch
import yaml

from napari_unet import cli
from napari_unet.core import bioimageio as bmz
from napari_unet.core.checkpoint import CheckpointError, load_model, save_model
from napari_unet.core.io import read_image, write_array
from napari_unet.core.model import UNet
from napari_unet.core.segment import segment
from napari_unet.core.synthetic import make_cells
from napari_unet.core.tiling import predict_tiled
from napari_unet.core.training import train_to_completion


@pytest.fixture(autouse=True)
def _small_test_tensors(monkeypatch):
    """Smaller test tensors than the default: the packages are the same, only faster to test."""
    monkeypatch.setattr(bmz, "TEST_OUTPUT_SIDE", 48)


@pytest.fixture(scope="module")
def bioimageio_core(tmp_path_factory):
    """``bioimageio.core``, offline: no IO checks over the network, a cache in tmp."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOIMAGEIO_PERFORM_IO_CHECKS", "False")
        patch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path_factory.mktemp("bioimageio_cache")))
        core = pytest.importorskip("bioimageio.core")
        yield core


def _tiny(in_channels: int = 1, seed: int = 0, **kw) -> UNet:
    """A tiny U-Net with non-default batch-norm statistics."""
    torch.manual_seed(seed)
    model = UNet(in_channels=in_channels, depth=2, base_channels=4, norm="batch", **kw)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, in_channels, 76, 76) * 2)
    return model.eval()


def _fine_tuned() -> UNet:
    """A tiny model trained, then fine-tuned (``metadata["training"]`` of a second run)."""
    return copy.deepcopy(_trained_twice())


@functools.cache
def _trained_twice() -> UNet:
    image, labels = make_cells((96, 96), 8, seed=1)
    model = _tiny()
    settings = dict(steps=2, patch_size=32, batch_size=2, augment=False, device="cpu", seed=0)
    train_to_completion(model, image, labels, dense=True, **settings)
    train_to_completion(model, image, labels, dense=True, **settings)
    assert model.metadata["training"]["steps_completed"] == 2
    return model


def _scaled() -> UNet:
    model = _tiny(seed=2)
    model.metadata = {"scale": {"object_diameter": 20.0, "data_diameter": 60.0}, "threshold": 0.6}
    return model


MODELS = {
    "new": _tiny,
    "fine_tuned": _fine_tuned,
    "rgb": lambda: _tiny(in_channels=3, seed=1),
    "scaled": _scaled,
}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    """``(kind, model, package path, checkpoint path)`` for each kind of model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bmz, "TEST_OUTPUT_SIDE", 48)
        model = MODELS[request.param]()
        root = tmp_path_factory.mktemp(request.param)
        package = bmz.export_package(model, root / f"{request.param}.zip")
    checkpoint = save_model(model, root / f"{request.param}.pt")
    return request.param, model, package, checkpoint


def _problems(summary) -> str:
    failed = [d for d in summary.details if d.status == "failed"]
    return "; ".join(f"{d.name}: {[e.msg for e in d.errors]}" for d in failed)


def _test_model(core, package):
    """``core.test_model(package)``, with the objects that exist already frozen for the gc.

    bioimageio.core collects garbage after every model it unloads (ten times per package):
    frozen, the test session's own objects are not scanned again each time.
    """
    gc.collect()
    gc.freeze()
    try:
        with torch.jit.optimized_execution(False):  # no profiling runs: each size runs once
            return core.test_model(package)
    finally:
        gc.unfreeze()


def test_bioimageio_test_model_passes(exported, bioimageio_core):
    """bioimageio.core reproduces the test output with both weight formats, at all sizes."""
    _, _, package, _ = exported
    summary = _test_model(bioimageio_core, package)
    assert summary.status == "passed", _problems(summary)
    assert not _problems(summary)
    tested = {d.loc[0] for d in summary.details if d.loc}
    assert {"weights"} <= tested


def test_description_passes_the_io_checks(exported, bioimageio_core):
    """With IO checks on (local files only): sha256 sums, documentation, sample tensors."""
    from bioimageio.spec import load_description

    descr = load_description(exported[2], perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format", _problems(descr.validation_summary)


def _image(model: UNet, shape=(150, 170)) -> np.ndarray:
    image, _ = make_cells(shape, 10, seed=3)
    if model.in_channels == 1:
        return image
    return np.stack([image * (1 - 0.3 * c) for c in range(model.in_channels)])


def test_round_trip_predicts_like_the_checkpoint(exported):
    """The imported UNet has the same config and metadata and predicts what the checkpoint did."""
    _, model, package, checkpoint = exported
    ours, loaded = load_model(checkpoint), bmz.load_package(package)
    assert isinstance(loaded, UNet)
    assert loaded.config == ours.config
    assert json.dumps(loaded.metadata, sort_keys=True) == json.dumps(
        json.loads(json.dumps(ours.metadata)), sort_keys=True
    )
    image = _image(model)
    axis = -3 if model.in_channels > 1 else None
    a = predict_tiled(ours, image, channel_axis=axis, device="cpu")
    b = predict_tiled(loaded, image, channel_axis=axis, device="cpu")
    print(f"round trip max abs difference: {float(np.abs(a - b).max()):.3g}")
    assert float(np.abs(a - b).max()) <= 1e-4
    seg_a = segment(ours, image, channel_axis=axis, device="cpu")
    seg_b = segment(loaded, image, channel_axis=axis, device="cpu")
    np.testing.assert_array_equal(seg_a.instances, seg_b.instances)
    assert seg_a.factor == seg_b.factor and seg_a.threshold == seg_b.threshold


def _read_package(path) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return yaml.safe_load(files[bmz.RDF_NAME]), files


def test_package_describes_the_network(exported):
    """Axes, preprocessing, output, test tensors, cover, README and config match the model."""
    kind, model, package, _ = exported
    rdf, files = _read_package(package)
    assert rdf["format_version"].startswith("0.5.") and rdf["type"] == "model"
    (inp,), (out,) = rdf["inputs"], rdf["outputs"]
    size = inp["axes"][2]["size"]
    assert size == {"min": model.min_input_size, "step": model.shape_multiple}
    assert out["axes"][2]["size"]["offset"] == -2 * model.context
    (pre,) = inp["preprocessing"]
    assert pre["id"] == "scale_range"
    assert pre["kwargs"] == {"axes": ["y", "x"], "min_percentile": 1.0, "max_percentile": 99.8}
    assert out["axes"][1]["channel_names"] == ["background", "cell"]
    assert len(inp["axes"][1]["channel_names"]) == model.in_channels
    for entry in rdf["weights"].values():
        assert hashlib.sha256(files[entry["source"]]).hexdigest() == entry["sha256"]
    x = np.load(io.BytesIO(files[inp["test_tensor"]["source"]]))
    y = np.load(io.BytesIO(files[out["test_tensor"]["source"]]))
    assert x.shape[:2] == (1, model.in_channels) and x.dtype == np.float32
    np.testing.assert_array_equal(y[0], bmz.reference_probabilities(model, x[0]))
    assert y.shape[2:] == model.output_shape(x.shape[2:])
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    cover = read_cover(files[rdf["covers"][0]])
    assert cover.shape[1] == 2 * cover.shape[0] and cover.shape[2] == 3
    assert {c["doi"] for c in rdf["cite"]} >= {"10.1007/978-3-319-24574-4_28"}
    assert rdf["license"] == "CC-BY-4.0" and rdf["authors"]
    ours = rdf["config"]["napari_unet"]
    assert ours["config"] == model.config
    readme = files[rdf["documentation"]].decode()
    assert "## Validation" in readme and "## Training" in readme
    if kind == "scaled":
        assert ours["metadata"]["scale"] == {"object_diameter": 20.0, "data_diameter": 60.0}
        assert "20 px wide, 60 px in the training images" in readme and "0.6" in readme
    if kind == "fine_tuned":
        assert ours["metadata"]["training"]["steps_completed"] == 2
        assert "Last training run: 2 steps" in readme


def read_cover(data: bytes) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(data, extension=".png")


def test_same_padding_declares_a_halo(tmp_path):
    """With same padding the output has the input's size and the context is the halo."""
    model = _tiny(padding="same")
    package = bmz.export_package(model, tmp_path / "same.zip")
    rdf, _ = _read_package(package)
    y_axis = rdf["outputs"][0]["axes"][2]
    assert y_axis["halo"] == model.context and "offset" not in y_axis["size"]
    size = rdf["inputs"][0]["axes"][2]["size"]
    assert size["min"] > 2 * model.context and size["min"] % model.shape_multiple == 0
    loaded = bmz.load_package(package).eval()
    x = torch.rand(1, 1, size["min"], size["min"])
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "config",
    [
        {"norm": None, "upsampling": "bilinear"},
        {"norm": "group", "padding": "same", "upsampling": "bilinear"},
        {"norm": "batch", "depth": 3, "n_classes": 3},
    ],
)
def test_torchscript_is_the_network_with_softmax(config):
    """The TorchScript weights compute softmax(UNet) for every architecture, at any valid size."""
    torch.manual_seed(0)
    model = UNet(**{"base_channels": 4, "depth": 2, **config}).eval()
    with warnings.catch_warnings():  # TorchScript is what bioimage.io runs; deprecated in torch
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        scripted = torch.jit.load(io.BytesIO(bmz.torchscript_bytes(model)))
    smallest, step = bmz._size_range(model)
    for side in (smallest, smallest + 3 * step):
        x = torch.rand(2, 1, side, side + step)
        with torch.no_grad():
            expected = torch.softmax(model(x), dim=1)
            torch.testing.assert_close(scripted(x), expected, rtol=1e-5, atol=1e-6)


def test_border_class_network_round_trips(tmp_path, bioimageio_core):
    """A 3-class (border-aware) network: channels named, a valid package, the same model back."""
    from bioimageio.spec import load_description

    model = _tiny(n_classes=3)
    package = bmz.export_package(model, tmp_path / "border.zip")
    rdf, _ = _read_package(package)
    assert rdf["outputs"][0]["axes"][1]["channel_names"] == ["background", "cell", "border"]
    descr = load_description(package, perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format", _problems(descr.validation_summary)
    x = torch.rand(1, 1, 60, 64)
    with torch.no_grad():
        torch.testing.assert_close(bmz.load_package(package).eval()(x), model(x), rtol=0, atol=0)


def test_metadata_and_arguments_fill_authors_license_and_name(tmp_path):
    model = _tiny()
    model.metadata = {"license": "MIT", "authors": ["Ada Lovelace"], "name": "x"}
    rdf, _ = _read_package(bmz.export_package(model, tmp_path / "a.zip"))
    assert rdf["license"] == "MIT" and rdf["authors"] == [{"name": "Ada Lovelace"}]
    assert rdf["name"] == "napari-unet x"
    rdf, _ = _read_package(
        bmz.export_package(model, tmp_path / "b.zip", name="Cells, 2D (mine)",
                           authors=["B/C"], license="CC0-1.0")
    )
    assert rdf["name"] == "Cells 2D (mine)" and rdf["authors"] == [{"name": "B-C"}]
    assert rdf["license"] == "CC0-1.0"


def test_export_never_overwrites_and_writes_atomically(tmp_path, monkeypatch):
    model = _tiny()
    path = bmz.export_package(model, tmp_path / "m.zip")
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        bmz.export_package(model, path)
    monkeypatch.setattr(bmz, "_write_zip", lambda tmp, files: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError):
        bmz.export_package(model, path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"]


def test_sample_image_gives_the_test_tensors(tmp_path):
    """A user image (RGB for a 1-channel model, any size) is converted, resampled and fitted."""
    model = _tiny()
    model.metadata = {"scale": {"object_diameter": 20.0, "data_diameter": 40.0}}
    image, _ = make_cells((300, 120), 20, seed=4)
    rgb = (np.stack([image, image, 0.5 * image], axis=-1) * 255).astype(np.uint8)
    package = bmz.export_package(model, tmp_path / "s.zip", sample=rgb, channel_axis=-1)
    rdf, files = _read_package(package)
    x = np.load(io.BytesIO(files[rdf["inputs"][0]["test_tensor"]["source"]]))
    side = bmz.sample_side(model)
    assert x.shape == (1, 1, side, side) and np.isfinite(x).all() and x.std() > 0


def _rewrite(src, dst, change) -> None:
    with zipfile.ZipFile(src) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    change(files)
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_foreign_and_broken_packages_are_refused(tmp_path, capsys):
    """Clear CheckpointErrors from load_package, exit 4 from the CLI."""
    good = bmz.export_package(_tiny(), tmp_path / "good.zip")
    (tmp_path / "garbage.zip").write_bytes(b"not a zip at all")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("hello.txt", "hi")

    def foreign(files):
        rdf = yaml.safe_load(files[bmz.RDF_NAME])
        del rdf["config"]["napari_unet"]
        files[bmz.RDF_NAME] = yaml.safe_dump(rdf).encode()

    def corrupt(files):
        files["weights.pt"] = files["weights.pt"][:-10] + b"0123456789"

    _rewrite(good, tmp_path / "foreign.zip", foreign)
    _rewrite(good, tmp_path / "corrupt.zip", corrupt)
    _rewrite(good, tmp_path / "missing.zip", lambda files: files.pop("weights.pt"))
    expected = {
        "garbage.zip": "not a readable zip",
        "empty.zip": "holds no rdf.yaml",
        "foreign.zip": "not exported by napari-unet",
        "corrupt.zip": "sha256 does not match",
        "missing.zip": "missing from the package",
    }
    image = tmp_path / "image.tif"
    write_array(image, make_cells((64, 64), 3)[0])
    for name, words in expected.items():
        with pytest.raises(CheckpointError, match=words):
            bmz.load_package(tmp_path / name)
        code = cli.main(["predict", str(tmp_path / name), str(image), "--out", str(tmp_path)])
        assert code == cli.EXIT_UNREADABLE
        assert words in capsys.readouterr().err
    checkpoint = save_model(_tiny(), tmp_path / "model.pt")
    assert not bmz.is_package(checkpoint) and bmz.is_package(good)
    assert all(isinstance(bmz.load_any(p), UNet) for p in (checkpoint, good))
    with pytest.raises(CheckpointError, match="holds no rdf.yaml"):
        bmz.load_any(tmp_path / "empty.zip")


def test_cli_export_then_predict_the_package(tmp_path, capsys):
    """``export MODEL.pt --out NAME.zip`` then ``predict NAME.zip``: the checkpoint's labels."""
    model = _fine_tuned()
    checkpoint = save_model(model, tmp_path / "model.pt")
    package = tmp_path / "model.zip"
    image = tmp_path / "images" / "cells.tif"
    write_array(image, make_cells((120, 100), 8, seed=5)[0])
    sample = ["--sample", str(image)]
    assert cli.main(["export", str(checkpoint), "--out", str(package), *sample]) == 0
    assert cli.main(["export", str(checkpoint), "--out", str(package)]) == cli.EXIT_FILE
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export", str(checkpoint), "--out", str(package), "--overwrite"]) == 0
    assert cli.main(["export", str(checkpoint), "--out", str(tmp_path / "x.pt")]) == 2
    assert cli.main(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "n.zip")]) == 3
    for name, source in (("pt", checkpoint), ("zip", package)):
        out = tmp_path / name
        assert cli.main(["predict", str(source), str(image), "--out", str(out)]) == 0
    np.testing.assert_array_equal(
        read_image(tmp_path / "pt" / "cells.tif"), read_image(tmp_path / "zip" / "cells.tif")
    )
