"""PredictWidget / predict_layer: layers added in place and aligned, errors as notifications."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core import tiling
from napari_unet.core.checkpoint import save_model
from napari_unet.core.model import UNet
from napari_unet.core.segment import prepare_image
from napari_unet.core.synthetic import make_cells
from napari_unet.widgets import _notify
from napari_unet.widgets._layers import add_or_update_labels, image_layer_data
from napari_unet.widgets._session import get_session
from napari_unet.widgets.predict import PredictWidget, predict_layer


@pytest.fixture
def oracle(monkeypatch):
    """Replace the network by a perfect one: class-1 probability = ground-truth cells.

    Widget tests check the plumbing (layers, geometry, progress, thresholds), not model quality.
    """
    truth: dict[str, np.ndarray] = {}

    def fake_predict_tiled(model, image, *, progress=None, cancel=None, **kwargs):
        truth["flips"] = kwargs.get("flips")
        fg = (truth["labels"] > 0).astype(np.float32) * 0.9 + 0.05
        for done in (1, 2):
            if cancel is not None and cancel():
                raise tiling.PredictionCancelled("cancelled")
            if progress is not None:
                progress(done, 2)
        return np.stack([1 - fg, fg])

    monkeypatch.setattr(tiling, "predict_tiled", fake_predict_tiled)
    return truth


@pytest.fixture
def errors(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(_notify, "notify_error", seen.append)
    monkeypatch.setattr(_notify, "notify_warning", seen.append)
    monkeypatch.setattr(_notify, "notify_info", lambda msg: None)
    return seen


def _run(qtbot, worker):
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()


def test_predict_adds_aligned_layers_and_updates_in_place(make_napari_viewer, qtbot, errors,
                                                          oracle):
    viewer = make_napari_viewer()
    image, labels = make_cells((80, 72), n_cells=8, seed=5)
    oracle["labels"] = labels
    trained = UNet(depth=2, base_channels=4)
    layer = viewer.add_image(image, name="cells", scale=(2.0, 0.5), translate=(10.0, -3.0))
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image_combo.currentText() == "cells"
    get_session(viewer).set_model(trained, "trained")
    assert "trained" in widget.model_label.text()
    widget.device_combo.setCurrentText("cpu")
    progress: list[tuple[int, int]] = []

    worker = widget.predict(start=False)
    worker.finished.connect(lambda: progress.append((-1, -1)))
    _run(qtbot, worker)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert errors == []
    inst = viewer.layers["cells instances"]
    prob = viewer.layers["cells probability"]
    assert inst.data.shape == prob.data.shape == image.shape
    assert inst.data.dtype.kind in "iu" and prob.data.dtype == np.float32
    for result in (inst, prob):
        np.testing.assert_allclose(result.scale, layer.scale)
        np.testing.assert_allclose(result.translate, layer.translate)
    np.testing.assert_allclose(prob.data, np.where(labels > 0, 0.95, 0.05), atol=1e-6)
    # the oracle's instances cover the cells (touching cells may merge or split)
    assert np.array_equal(inst.data > 0, labels > 0) or (
        np.mean((inst.data > 0) == (labels > 0)) > 0.97)
    assert inst.data.max() >= 0.5 * labels.max()
    stored = get_session(viewer).predictions["cells"]
    np.testing.assert_array_equal(stored.instances, inst.data)
    assert widget.progress_bar.value() == widget.progress_bar.maximum()

    # the threshold re-labels the cached probabilities at once, without predicting again
    widget.threshold.setValue(0.96)
    qtbot.waitUntil(lambda: widget.relabel_worker is None, timeout=10_000)
    assert inst.data.max() == 0
    widget.threshold.setValue(0.5)
    qtbot.waitUntil(lambda: widget.relabel_worker is None, timeout=10_000)
    assert inst.data.max() >= 0.5 * labels.max()
    # a second prediction above every probability empties the same layer, no duplicate
    widget.threshold.setValue(0.96)
    qtbot.waitUntil(lambda: widget.relabel_worker is None, timeout=10_000)
    n_layers = len(viewer.layers)
    _run(qtbot, widget.predict(start=False))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["cells instances"] is inst
    assert inst.data.max() == 0
    assert get_session(viewer).predictions["cells"].threshold == pytest.approx(0.96)


def test_stack_and_multichannel_prediction(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    stack = np.stack([make_cells((48, 48), n_cells=4, seed=s)[0] for s in range(3)])
    stack_layer = viewer.add_image(stack, name="stack")
    model = UNet(depth=2, base_channels=4)
    _run(qtbot, predict_layer(viewer, stack_layer, model, start=False, device="cpu"))
    inst = viewer.layers["stack instances"].data
    assert inst.shape == (3, 48, 48)
    ids = [set(np.unique(inst[z])) - {0} for z in range(3)]
    assert all(not (ids[i] & ids[j]) for i in range(3) for j in range(i + 1, 3))

    two = np.stack([stack[0], stack[1]])  # (C, Y, X), channels on axis -3
    two_layer = viewer.add_image(two, name="two", scale=(1.0, 0.5, 0.25))
    model2 = UNet(in_channels=2, depth=2, base_channels=4)
    _run(qtbot, predict_layer(viewer, two_layer, model2, start=False, device="cpu"))
    out = viewer.layers["two instances"]
    assert out.data.shape == (48, 48)
    np.testing.assert_allclose(out.scale, (0.5, 0.25))
    assert errors == []


@pytest.mark.parametrize(
    "case, expected",
    [("no_model", "no model"), ("rgb", "channel mismatch"), ("nan", "NaN"),
     ("tiny", "too small")],
)
def test_bad_inputs_notify_without_layers(make_napari_viewer, errors, case, expected):
    viewer = make_napari_viewer()
    image = make_cells((48, 48), n_cells=4, seed=1)[0]
    model = UNet(depth=2, base_channels=4)
    if case == "no_model":
        model = None
    elif case == "rgb":  # 3 colours for a 2-channel model (a 1-channel one converts them)
        image = (np.stack([image] * 3, axis=-1) * 255).astype(np.uint8)
        model = UNet(in_channels=2, depth=2, base_channels=4)
    elif case == "nan":
        image[3, 4] = np.nan
    elif case == "tiny":
        image = image[:1, :]
    layer = viewer.add_image(image, name="img", rgb=case == "rgb")
    done: list[bool] = []
    assert predict_layer(viewer, layer, model, on_finished=done.append) is None
    assert done == [False]
    assert len(errors) == 1 and expected in errors[0], errors
    assert [lay.name for lay in viewer.layers] == ["img"]


def test_cancelled_prediction_adds_nothing(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.random.default_rng(0).random((2, 64, 64)), name="img")
    done: list[bool] = []
    worker = predict_layer(viewer, layer, UNet(depth=2, base_channels=4), start=False,
                           device="cpu", on_finished=done.append)
    worker.quit()  # cancel before the first batch finishes
    _run(qtbot, worker)
    assert done == [False]
    assert [lay.name for lay in viewer.layers] == ["img"]
    assert "img" not in get_session(viewer).predictions


def test_widget_without_model_and_model_loading(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.predict() is None and "Select an image" in errors[-1]
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    assert widget.predict() is None and "no model" in errors[-1]
    assert widget.predict_button.isEnabled() and widget.worker is None
    bad = tmp_path / "bad.pt"
    bad.write_text("nonsense")
    assert not widget.load_model(str(bad)) and "Cannot load" in errors[-1]
    path = save_model(UNet(depth=2, base_channels=4), tmp_path / "m.pt")
    assert widget.load_model(str(path))
    assert get_session(viewer).source == f"checkpoint: {path}"
    assert "checkpoint" in widget.model_label.text()


def test_prepare_image_channel_rules():
    one = UNet(depth=1, base_channels=2)
    three = UNet(in_channels=3, depth=1, base_channels=2)
    rgb = np.zeros((20, 20, 3), np.uint8)
    arr, axis = prepare_image(rgb, -1, one)  # colour -> one channel (hematoxylin)
    assert axis is None and arr.shape == (20, 20)
    arr, axis = prepare_image(rgb, -1, three)
    assert axis == -3 and arr.shape == (3, 20, 20)
    arr, axis = prepare_image(np.zeros((3, 20, 20)), None, three)
    assert axis == -3
    with pytest.raises(ValueError, match="expects 3 channels"):
        prepare_image(np.zeros((20, 20)), None, three)
    arr, axis = prepare_image(np.zeros((20, 20, 1)), -1, one)  # single channel is dropped
    assert axis is None and arr.shape == (20, 20)


def test_layer_helpers(make_napari_viewer):
    viewer = make_napari_viewer()
    rgb = viewer.add_image(np.zeros((10, 12, 3), np.uint8), rgb=True, scale=(2, 3))
    data, axis = image_layer_data(rgb)
    assert axis == -1 and data.shape == (10, 12, 3)
    plain = viewer.add_image(np.zeros((4, 10, 12)), name="stack", metadata={"channel_axis": 0})
    assert image_layer_data(plain)[1] == 0
    first = add_or_update_labels(viewer, np.ones((10, 12), int), "out", like=rgb)
    np.testing.assert_allclose(first.scale, (2, 3))
    second = add_or_update_labels(viewer, np.full((10, 12), 2), "out", like=rgb)
    assert second is first and first.data.max() == 2
    assert [lay.name for lay in viewer.layers].count("out") == 1


def test_rgb_layer_with_starting_model_and_a_diameter(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    image, labels = make_cells((64, 80), n_cells=5, seed=2)
    rgb = (np.stack([1 - image] * 3, axis=-1) * 255).clip(0, 255).astype(np.uint8)
    layer = viewer.add_image(rgb, name="he", rgb=True, scale=(0.5, 0.5))
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.use_starting_model()
    assert "starting model" in widget.model_label.text()
    assert widget.threshold.value() == pytest.approx(0.8)
    assert widget.diameter_value() == "auto"  # a starting model: size estimated
    widget.diameter.setValue(36.0)  # objects twice the model's size: predicted at about 0.5x
    assert viewer.layers["object size"].data[0].shape == (4, 2)
    assert widget.diameter_value() == 36.0
    widget.device_combo.setCurrentText("cpu")
    _run(qtbot, widget.predict(start=False))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)
    assert errors == []
    out = viewer.layers["he instances"]
    assert out.data.shape == labels.shape
    np.testing.assert_allclose(out.scale, layer.scale)
    assert layer.visible


def test_starting_model_combo_lists_every_shipped_model(make_napari_viewer, errors):
    from napari_unet.models import starting_models

    widget = PredictWidget(make_napari_viewer())
    names = [widget.starting_combo.itemText(i) for i in range(widget.starting_combo.count())]
    assert names == list(starting_models()) and "he-nuclei" in names
    widget.starting_combo.setCurrentText("he-nuclei")
    widget.starting_button.click()
    assert widget.session.model.in_channels == 3
    assert "starting model: he-nuclei" in widget.model_label.text()
    widget.use_starting_model("nuclei, fluorescence")  # the old display name still works
    assert widget.session.model.in_channels == 1
    assert errors == []


def test_predict_layer_estimates_the_size_for_a_model_that_records_none(make_napari_viewer,
                                                                       qtbot, errors):
    """What Train, Retrain and Live predict with when they end: a model without a recorded
    data size (nuclei, or a fine-tune of it) has the size of the image's objects estimated;
    a recorded size is used as it is."""
    from napari_unet.models import load_pretrained

    viewer = make_napari_viewer()
    image, _ = make_cells((64, 64), n_cells=5, seed=2)
    big = np.kron(image, np.ones((4, 4))).astype(np.float32)  # objects 4x the usual size
    layer = viewer.add_image(big, name="big")
    model = load_pretrained("nuclei")
    _run(qtbot, predict_layer(viewer, layer, model, start=False, device="cpu"))
    estimated = get_session(viewer).predictions["big"].factor
    assert estimated < 0.5  # shrunk towards the model's size, not predicted as it is
    model.metadata["scale"]["data_diameter"] = 17.9  # recorded: the model's own size, 1x
    _run(qtbot, predict_layer(viewer, layer, model, start=False, device="cpu"))
    assert get_session(viewer).predictions["big"].factor == 1.0
    assert errors == []


def test_prediction_follows_the_users_annotations_and_relabel_keeps_them(
        make_napari_viewer, qtbot, errors, oracle):
    from napari_unet.core.segment import Annotations

    viewer = make_napari_viewer()
    yy, xx = np.mgrid[:64, :96]
    left, right = (yy - 32) ** 2 + (xx - 30) ** 2 <= 81, (yy - 32) ** 2 + (xx - 47) ** 2 <= 196
    far = (yy - 10) ** 2 + (xx - 85) ** 2 <= 36
    oracle["labels"] = (left | right | far).astype(np.int32)  # the network merges the pair
    layer = viewer.add_image(np.where(oracle["labels"] > 0, 200.0, 10.0), name="cells")
    widget = PredictWidget(viewer)
    get_session(viewer).set_model(UNet(depth=2, base_channels=4), "trained")
    edits = np.zeros(layer.data.shape, np.int32)
    edits[left], edits[far] = 2, 1  # the user's cell; an object the user removed
    _run(qtbot, predict_layer(viewer, layer, get_session(viewer).model, threshold=0.5,
                              min_size=30, start=False, annotations=Annotations.of(edits)))
    inst = viewer.layers["cells instances"]

    def follows() -> bool:
        return inst.data[far].max() == 0 and inst.data[32, 30] != inst.data[32, 47] > 0

    assert errors == [] and follows()
    widget.threshold.setValue(0.6)  # re-labelling the cached probabilities keeps the edits
    qtbot.waitUntil(lambda: widget.relabel_worker is None, timeout=10_000)
    cached = get_session(viewer).predictions["cells"]
    assert follows() and cached.threshold == 0.6 and cached.annotations is not None


def test_flip_checkbox_reaches_the_prediction(make_napari_viewer, qtbot, errors, oracle):
    viewer = make_napari_viewer()
    image, labels = make_cells((64, 64), n_cells=5, seed=2)
    oracle["labels"] = labels
    viewer.add_image(image, name="cells")
    widget = PredictWidget(viewer)
    get_session(viewer).set_model(UNet(depth=2, base_channels=4), "trained")
    widget.device_combo.setCurrentText("cpu")
    for checked in (True, False):
        widget.flips.setChecked(checked)
        _run(qtbot, widget.predict(start=False))
        qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
        assert oracle["flips"] is checked
    assert errors == []
