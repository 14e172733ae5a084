"""The headless main job: train on the sample's painted cells, predict, write labels, say where."""

import numpy as np

from napari_unet import demo
from napari_unet.core.io import read_image


def test_headless_demo_writes_labels_of_the_image_shape(tmp_path, capsys):
    path = demo.run_headless(tmp_path, seconds=3.0, seed=0)
    labels = read_image(path)
    assert labels.shape == (256, 256) and labels.dtype == np.uint16
    assert labels.max() >= 1
    out = capsys.readouterr().out
    assert str(path.resolve()) in out and "accuracy@0.5" in out


def test_demo_without_display_runs_headless(monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    calls = []
    monkeypatch.setattr(demo, "run_headless", lambda *args: calls.append(args))
    assert demo.main(["--out", str(tmp_path), "--seconds", "1"]) == 0
    assert calls and calls[0][0] == tmp_path
