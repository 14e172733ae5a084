"""The napari-unet command line: train -> predict -> evaluate, and every bad-input exit code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unet import cli
from napari_unet.core.io import read_image, write_array
from napari_unet.core.synthetic import make_cells


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Synthetic images/labels on disk and a tiny model trained by the CLI (20 steps)."""
    root = tmp_path_factory.mktemp("cli")
    for i in range(2):
        image, labels = make_cells((96, 96), 8, seed=i)
        write_array(root / "images" / f"cells{i}.tif", image)
        write_array(root / "gt" / f"cells{i}.tif", labels)
    code = cli.main(
        [
            "train",
            str(root / "images" / "cells0.tif"),
            str(root / "images" / "cells1.tif"),
            "--labels",
            str(root / "gt" / "cells0.tif"),
            str(root / "gt" / "cells1.tif"),
            "--out",
            str(root / "model.pt"),
            "--depth",
            "2",
            "--width",
            "8",
            "--steps",
            "20",
            "--dense-labels",
            "--patch-size",
            "32",
            "--batch-size",
            "2",
            "--seed",
            "0",
            "--no-augment",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return root


def _files(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_round_trip(trained, tmp_path, capsys):
    out = tmp_path / "pred"
    code = cli.main(
        [
            "predict",
            str(trained / "model.pt"),
            str(trained / "images"),
            "--out",
            str(out),
            "--format",
            "png",
            "--probabilities",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert _files(out) == sorted(
        ["cells0.png", "cells1.png", "probabilities", "cells0.tif", "cells1.tif"]
    )
    labels = read_image(out / "cells0.png")
    assert labels.shape == (96, 96) and labels.dtype == np.uint16
    prob = read_image(out / "probabilities" / "cells0.tif")
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
    capsys.readouterr()
    report = tmp_path / "scores.json"
    assert cli.main(["evaluate", str(out), str(trained / "gt"), "--json", str(report)]) == 0
    table = capsys.readouterr().out
    assert "cells0" in table and "mean" in table and "ap@0.50" in table
    scores = json.loads(report.read_text())
    assert set(scores["images"]) == {"cells0", "cells1"}
    mean = scores["mean"]
    assert len([k for k in mean if k.startswith("ap@")]) == 9
    for key in ("iou", "dice", "map", "mean_matched_iou", "pixel_error", "rand_error"):
        assert 0.0 <= mean[key] <= 1.0
    # the metrics are computed from the files, e.g. pixel error of the binary masks
    gt = read_image(trained / "gt" / "cells0.tif")
    expected = np.mean((labels > 0) != (gt > 0))
    assert scores["images"]["cells0"]["pixel_error"] == pytest.approx(expected)
    # evaluating a prediction against itself is perfect
    assert cli.main(["evaluate", str(trained / "gt"), str(trained / "gt")]) == 0


def test_folder_equals_per_file_python(trained, tmp_path):
    from napari_unet.core.checkpoint import load_model
    from napari_unet.core.segment import segment

    out = tmp_path / "pred"
    assert (
        cli.main(
            [
                "predict",
                str(trained / "model.pt"),
                str(trained / "images"),
                "--out",
                str(out),
                "--format",
                "npy",
                "--min-size",
                "10",
            ]
        )
        == 0
    )
    model = load_model(trained / "model.pt")
    for name in ("cells0", "cells1"):
        image = read_image(trained / "images" / f"{name}.tif")
        expected = segment(model, image, min_size=10).instances  # the model's own scale
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"), expected)


def test_no_flips_predicts_once(trained, tmp_path):
    from napari_unet.core.checkpoint import load_model
    from napari_unet.core.segment import segment

    out = tmp_path / "pred"
    args = ["predict", str(trained / "model.pt"), str(trained / "images" / "cells0.tif")]
    args += ["--out", str(out), "--format", "npy", "--min-size", "10", "--no-flips"]
    assert cli.main(args) == 0
    image = read_image(trained / "images" / "cells0.tif")
    model = load_model(trained / "model.pt")
    once = segment(model, image, min_size=10, flips=False)
    np.testing.assert_array_equal(np.load(out / "cells0.npy"), once.instances)


def test_zarr_input_gives_zarr_store(trained, tmp_path):
    zarr = pytest.importorskip("zarr")
    image = read_image(trained / "images" / "cells0.tif")
    src = zarr.open_array(
        store=str(tmp_path / "big.zarr"),
        mode="w",
        shape=image.shape,
        chunks=(48, 48),
        dtype=image.dtype,
    )
    src[:] = image
    out = tmp_path / "pred"
    assert (
        cli.main(
            [
                "predict",
                str(trained / "model.pt"),
                str(tmp_path / "big.zarr"),
                "--out",
                str(out),
                "--chunk",
                "48",
            ]
        )
        == 0
    )
    labels = read_image(out / "big.zarr")
    assert labels.shape == image.shape


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("napari-unet: error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_inputs(trained, tmp_path, capsys):
    model = str(trained / "model.pt")
    image = str(trained / "images" / "cells0.tif")
    out = tmp_path / "pred"
    # missing input / missing model -> 3
    assert cli.main(["predict", model, str(tmp_path / "nope.tif"), "--out", str(out)]) == 3
    assert "nope.tif" in _error(capsys)
    assert cli.main(["predict", str(tmp_path / "none.pt"), image, "--out", str(out)]) == 3
    assert "model not found" in _error(capsys)
    # unreadable image -> 4
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not a tiff at all")
    assert cli.main(["predict", model, str(bad), "--out", str(out)]) == 4
    assert "broken.tif" in _error(capsys)
    # corrupt model -> 4
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    assert cli.main(["predict", str(corrupt), image, "--out", str(out)]) == 4
    assert "checkpoint" in _error(capsys)
    # incompatible image (2 channels, not a colour image, for a 1-channel model) -> 5
    four = tmp_path / "four.npy"
    write_array(four, np.zeros((2, 64, 64), np.float32))
    assert cli.main(["predict", model, str(four), "--out", str(out), "--channel-axis", "0",
                     "--conversion", "grey"]) == 5
    assert "colour" in _error(capsys)
    assert _files(out) == []  # nothing written by any failure
    # existing output -> 3, file untouched
    out.mkdir(exist_ok=True)
    (out / "cells0.tif").write_bytes(b"keep")
    assert cli.main(["predict", model, image, "--out", str(out)]) == 3
    assert "--overwrite" in _error(capsys)
    assert (out / "cells0.tif").read_bytes() == b"keep"
    assert cli.main(["predict", model, image, "--out", str(out), "--overwrite"]) == 0
    assert read_image(out / "cells0.tif").shape == (96, 96)
    # train: shape mismatch -> 5, count mismatch / bad option -> 2, nothing written
    small = tmp_path / "small.tif"
    write_array(small, np.ones((50, 50), np.int32))
    args = [
        "train",
        image,
        "--labels",
        str(small),
        "--out",
        str(tmp_path / "m.pt"),
        "--steps",
        "1",
        "--depth",
        "2",
        "--width",
        "4",
    ]
    assert cli.main(args) == 5
    _error(capsys)
    assert cli.main(["train", image, image, "--labels", str(small), "--out", "x.pt"]) == 2
    _error(capsys)
    assert cli.main(["train", image, "--steps", "0"]) == 2
    assert not (tmp_path / "m.pt").exists()
    # evaluate: shape mismatch -> 5, nothing in common -> 3
    gt = tmp_path / "gt"
    write_array(gt / "cells0.tif", np.zeros((10, 10), np.int32))
    assert cli.main(["evaluate", str(out), str(gt), "--json", str(tmp_path / "s.json")]) == 5
    assert "shape" in _error(capsys)
    assert not (tmp_path / "s.json").exists()
    assert cli.main(["evaluate", str(out), str(trained / "images" / "..")]) == 3
    _error(capsys)


def test_cancel_exits_130(trained, tmp_path, capsys, monkeypatch):
    from napari_unet.core import scaleout

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scaleout.files, "file_maps", interrupted)  # every in-memory path reads here
    code = cli.main(
        [
            "predict",
            str(trained / "model.pt"),
            str(trained / "images"),
            "--out",
            str(tmp_path / "p"),
        ]
    )
    assert code == 130
    assert "cancelled" in _error(capsys)
    assert _files(tmp_path / "p") == []


def test_fine_tune_the_shipped_starting_model_by_name(trained, tmp_path):
    out = tmp_path / "tuned.pt"
    code = cli.main(
        [
            "train",
            str(trained / "images" / "cells0.tif"),
            "--labels",
            str(trained / "gt" / "cells0.tif"),
            "--from",
            "nuclei",
            "--out",
            str(out),
            "--steps",
            "2",
            "--dense-labels",
        ]
    )
    assert code == 0 and out.is_file()
    from napari_unet.core.checkpoint import load_model
    from napari_unet.models import load_pretrained

    tuned, start = load_model(out), load_pretrained()
    assert tuned.config == start.config
    changed = [
        name
        for name, value in tuned.state_dict().items()
        if value.is_floating_point() and not value.equal(start.state_dict()[name])
    ]
    assert changed  # the shipped weights were fine-tuned, not replaced by a new network


def test_predict_with_a_short_starting_model_name(trained, tmp_path, capsys):
    out = tmp_path / "pred"
    image = trained / "images" / "cells0.tif"
    code = cli.main(["predict", "em-cells", str(image), "--out", str(out), "--device", "cpu"])
    assert code == 0
    labels = read_image(out / "cells0.tif")
    assert labels.shape == (96, 96)


def test_help_lists_the_starting_models(capsys):
    assert cli.main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in ("nuclei", "phase-cells", "em-cells", "he-nuclei"):
        assert f"'{name}'" in text


def test_unknown_starting_model_name_is_a_missing_file(trained, tmp_path, capsys):
    code = cli.main(["predict", "mitochondria", str(trained / "images" / "cells0.tif"),
                     "--out", str(tmp_path / "p")])
    assert code == cli.EXIT_FILE
    assert "mitochondria" in _error(capsys)


def test_predict_estimates_the_size_for_a_model_that_records_none(trained, tmp_path,
                                                                  monkeypatch):
    """`predict nuclei` without --diameter estimates the object size per image; a model
    trained on the user's labels predicts at their recorded size; --diameter wins."""
    from napari_unet.core import scaleout

    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs["diameter"])
        return []

    monkeypatch.setattr(scaleout, "predict_files", record)
    image = str(trained / "images" / "cells0.tif")
    for model, extra in (("nuclei", []), (str(trained / "model.pt"), []),
                         ("nuclei", ["--diameter", "30"])):
        assert cli.main(["predict", model, image, "--out", str(tmp_path / "p"), *extra]) == 0
    assert seen == ["auto", None, 30.0]
