"""Checkpoints: exact round trip, safe loading, clear errors for every kind of bad file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_model,
    load_model_bytes,
    save_model,
)
from napari_unet.core.model import UNet


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trained_like(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    model = UNet(in_channels=2, n_classes=3, depth=2, base_channels=4, norm="batch")
    model.train()
    with torch.no_grad():  # non-default batch-norm statistics
        model(torch.randn(3, 2, 48, 48) * 2 + 1)
    model.metadata = {
        "normalization": {"low": 1.0, "high": 99.8},
        "training": {"steps": np.int64(12), "loss": np.float32(0.25), "sizes": (48, 48)},
        "classes": ["background", "cell"],
        "notes": None,
    }
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = trained_like()
    path = save_model(model, tmp_path / "m.pt")
    assert path == tmp_path / "m.pt"
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.metadata["training"] == {"steps": 12, "loss": 0.25, "sizes": (48, 48)}
    assert type(loaded.metadata["training"]["steps"]) is int
    assert loaded.metadata["classes"] == ["background", "cell"]
    x = torch.randn(2, 2, 52, 52)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x), atol=0, rtol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left


def test_file_is_plain_and_weights_only_loadable(tmp_path):
    path = save_model(trained_like(), tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    assert data["format"] == "napari-unet" and data["format_version"] == FORMAT_VERSION
    assert set(data) >= {"napari_unet_version", "config", "metadata", "state_dict"}
    assert load_model_bytes(path.read_bytes()).config == data["config"]


def test_overwrite_refusal(tmp_path):
    path = tmp_path / "m.pt"
    save_model(trained_like(0), path)
    first = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(trained_like(1), path)
    assert path.read_bytes() == first
    save_model(trained_like(1), path, overwrite=True)
    assert path.read_bytes() != first
    assert len(list(tmp_path.iterdir())) == 1
    with pytest.raises(IsADirectoryError):
        save_model(trained_like(), tmp_path)


def test_metadata_must_be_plain(tmp_path):
    model = trained_like()
    model.metadata["callback"] = object()
    with pytest.raises(ValueError, match=r"metadata\['callback'\]"):
        save_model(model, tmp_path / "m.pt")
    model.metadata = {1: "x"}
    with pytest.raises(ValueError, match="keys must be strings"):
        save_model(model, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="UNet"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "m.pt")  # type: ignore[arg-type]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_model(tmp_path)


class Foreign:
    pass


@pytest.mark.parametrize(
    "kind,match",
    [
        ("random", "not a readable"),
        ("truncated", "not a readable"),
        ("empty", "not a readable"),
        ("text", "not a readable"),
        ("pickle", "not a readable"),
        ("state_dict", "bare state_dict"),
        ("list", "holds a list"),
        ("newer", "newer napari-unet"),
        ("mismatch", "do not match"),
        ("bad_config", "invalid network configuration"),
    ],
)
def test_bad_files_raise_checkpoint_error(tmp_path, kind, match):
    model = trained_like()
    good = tmp_path / "good.pt"
    save_model(model, good)
    path = tmp_path / f"{kind}.pt"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text('{"format": "napari-unet"}')
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(Foreign()))
    elif kind == "state_dict":
        torch.save(model.state_dict(), path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    else:
        data = torch.load(good, weights_only=True)
        if kind == "newer":
            data["format_version"] = FORMAT_VERSION + 1
        elif kind == "mismatch":
            data["config"]["base_channels"] = 8
        else:
            data["config"]["padding"] = "full"
        torch.save(data, path)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)
    assert issubclass(CheckpointError, ValueError)


def test_load_bytes_errors_and_map_location(tmp_path):
    with pytest.raises(CheckpointError):
        load_model_bytes(b"garbage")
    path = save_model(trained_like(), tmp_path / "m.pt")
    loaded = load_model(path, map_location="cpu")
    assert next(loaded.parameters()).device.type == "cpu"
