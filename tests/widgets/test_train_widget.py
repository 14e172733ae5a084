"""TrainWidget: trains a tiny U-Net in a worker, live loss, cancel, validation, save, retrain."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import load_model, save_model
from napari_unet.core.model import UNet
from napari_unet.core.synthetic import make_cells
from napari_unet.core.training import (
    CORRECTION_ANCHOR,
    DEFAULT_DISTILL_WEIGHT,
    TrainConfig,
    TrainProgress,
)
from napari_unet.widgets import _notify, _training_run
from napari_unet.widgets import train as train_mod
from napari_unet.widgets._session import get_session
from napari_unet.widgets._training_run import training_loop
from napari_unet.widgets.train import TrainWidget, retrain

TINY = {"depth": 2, "base_channels": 4}


@pytest.fixture
def errors(monkeypatch):
    """Collect error notifications instead of showing them."""
    seen: list[str] = []
    monkeypatch.setattr(_notify, "notify_error", seen.append)
    monkeypatch.setattr(_notify, "notify_warning", lambda msg: None)
    monkeypatch.setattr(_notify, "notify_info", lambda msg: None)
    return seen


def _viewer_with_cells(make_napari_viewer, shape=(96, 96), seed=0):
    viewer = make_napari_viewer()
    image, labels = make_cells(shape, n_cells=10, seed=seed)
    viewer.add_image(image, name="img", scale=(0.5, 0.5), translate=(3.0, 4.0))
    viewer.add_labels(labels, name="lab", scale=(0.5, 0.5), translate=(3.0, 4.0))
    return viewer


def _tiny_widget(viewer, steps=40):
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.source_combo.currentIndex() == train_mod.SOURCE_PRETRAINED  # the default
    widget.source_combo.setCurrentIndex(train_mod.SOURCE_NEW)
    widget.depth.setValue(TINY["depth"])
    widget.width.setValue(TINY["base_channels"])
    widget.length.setValue(steps)
    widget.learning_rate.setValue(0.01)
    widget.batch_size.setValue(2)
    widget.patch_size.setValue(32)
    widget.augment.setChecked(False)
    widget.dense.setChecked(True)
    widget.device_combo.setCurrentText("cpu")
    widget.image_combo.setCurrentText("img")
    widget.labels_combo.setCurrentText("lab")
    return widget


def test_training_records_falling_loss_and_predicts(make_napari_viewer, qtbot, errors):
    viewer = _viewer_with_cells(make_napari_viewer)
    widget = _tiny_widget(viewer, steps=24)
    widget.learning_rate.setValue(0.02)
    yielded: list[TrainProgress] = []
    worker = widget.start_training(start=False)
    assert worker is not None and widget.busy
    worker.yielded.connect(yielded.append)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)

    assert errors == []
    assert [p.step for p in yielded] == list(range(1, 25))
    values = widget.loss_plot.values
    assert values == [p.loss for p in yielded] and widget.loss_plot.steps[-1] == 24
    assert np.mean(values[-6:]) < 0.8 * np.mean(values[:6])
    session = get_session(viewer)
    assert session.model is not None and session.source == "trained"
    assert session.model.depth == 2 and session.model.base_channels == 4
    assert session.train_settings["steps"] == 24
    assert widget.progress_bar.value() == 24
    # the follow-up prediction overlays the image, aligned with it
    inst = viewer.layers["img instances"]
    prob = viewer.layers["img probability"]
    assert inst.data.shape == prob.data.shape == (96, 96)
    np.testing.assert_allclose(inst.scale, (0.5, 0.5))
    np.testing.assert_allclose(inst.translate, (3.0, 4.0))
    cells = viewer.layers["lab"].data > 0
    assert prob.data[cells].mean() > prob.data[~cells].mean() + 0.1
    assert "img" in session.predictions


def test_cancel_stops_between_steps(make_napari_viewer, qtbot, errors):
    viewer = _viewer_with_cells(make_napari_viewer)
    widget = _tiny_widget(viewer, steps=100_000)
    worker = widget.start_training(start=False)
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        worker.start()
        qtbot.waitUntil(lambda: len(widget.loss_plot.values) >= 2, timeout=30_000)
        widget.cancel()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)
    steps = len(widget.loss_plot.values)
    assert 2 <= steps < 100_000
    session = get_session(viewer)
    assert session.model is not None
    assert session.source == f"trained (stopped at step {steps})"
    assert session.model.metadata["training"]["steps_completed"] == steps
    assert not session.model.training  # eval mode, back on the CPU
    assert next(session.model.parameters()).device.type == "cpu"
    assert "img instances" not in viewer.layers  # no prediction after a cancel
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()


BAD_CASES = [
    ("shape", "does not match"),
    ("empty", "no labels painted"),
    ("rgb_as_stack", "RGB"),
    ("too_small", "field of view"),
    ("channels", "channel mismatch"),
    ("no_model", "no current model"),
]


def test_bad_inputs_notify_and_leave_layers(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    widget = _tiny_widget(viewer)
    session = get_session(viewer)
    for case, expected in BAD_CASES:
        viewer.layers.clear()
        session.set_model(None, "none")
        image, labels = make_cells((64, 64), n_cells=5, seed=1)
        if case == "shape":
            labels = labels[:60]
        elif case == "empty":
            labels = np.zeros_like(labels)
        elif case == "rgb_as_stack":
            image = np.stack([image] * 3, axis=-1)
        elif case == "too_small":
            image, labels = image[:30, :30], labels[:30, :30]
        viewer.add_image(image, name="img", rgb=False)
        viewer.add_labels(labels, name="lab")
        widget.image_combo.setCurrentText("img")
        widget.labels_combo.setCurrentText("lab")
        widget.dense.setChecked(case != "empty")
        widget.depth.setValue(3 if case == "too_small" else TINY["depth"])
        source = train_mod.SOURCE_NEW
        if case == "channels":
            session.set_model(UNet(in_channels=2, **TINY), "new")
        if case in ("channels", "no_model"):
            source = train_mod.SOURCE_CONTINUE
        widget.source_combo.setCurrentIndex(source)
        before = [(layer.name, layer.data.copy()) for layer in viewer.layers]
        errors.clear()

        assert widget.start_training() is None, case
        assert len(errors) == 1 and expected in errors[0], (case, errors)
        assert not widget.busy and widget.train_button.isEnabled()
        after = [(layer.name, layer.data) for layer in viewer.layers]
        assert [n for n, _ in after] == [n for n, _ in before]
        for (_, old), (_, new) in zip(before, after, strict=True):
            np.testing.assert_array_equal(old, new)


def test_layer_pickers_follow_the_layer_list(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image_combo.count() == 0
    viewer.add_image(np.zeros((8, 8)), name="a")
    viewer.add_labels(np.zeros((8, 8), dtype=int), name="b")
    assert widget.image_combo.currentText() == "a"
    assert widget.labels_combo.currentText() == "b"
    widget.add_pair()
    widget.add_pair()  # no duplicate
    assert widget.pair_list.count() == 1
    assert [(i.name, lab.name) for i, lab in widget.pairs()] == [("a", "b")]
    viewer.layers.remove("a")
    assert widget.image_combo.count() == 0
    assert widget.start_training() is None
    assert "the image layer 'a' was removed from the viewer" in errors[-1]


def test_several_pairs_and_stacks_train(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    img1, lab1 = make_cells((64, 64), n_cells=6, seed=2)
    stack = [make_cells((64, 64), n_cells=6, seed=s) for s in (3, 4)]
    viewer.add_image(img1, name="img")
    viewer.add_labels(lab1, name="lab")
    viewer.add_image(np.stack([s[0] for s in stack]), name="stack")
    viewer.add_labels(np.stack([s[1] for s in stack]), name="stack labels")
    widget = _tiny_widget(viewer, steps=3)
    widget.add_pair()
    widget.image_combo.setCurrentText("stack")
    widget.labels_combo.setCurrentText("stack labels")
    widget.add_pair()
    assert widget.pair_list.count() == 2
    worker = widget.start_training(start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert errors == []
    assert get_session(viewer).model.metadata["training"]["n_images"] == 3
    assert viewer.layers["stack instances"].data.shape == (2, 64, 64)


def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot, errors):
    viewer = _viewer_with_cells(make_napari_viewer)
    widget = _tiny_widget(viewer, steps=100_000)
    worker = widget.start_training(start=False)
    run = widget.run
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        worker.start()
        qtbot.waitUntil(lambda: run.last is not None, timeout=30_000)
        viewer.close()
    qtbot.waitUntil(lambda: not run.busy, timeout=10_000)
    assert run.status == "cancelled"
    assert run.last.step < 100_000


@pytest.mark.filterwarnings("error:.*_qt_window:FutureWarning")
def test_closing_the_viewer_stops_a_retrain(make_napari_viewer, qtbot, errors):
    """A run without a dock widget (Retrain) learns from the viewer's window that it closed."""
    viewer = _viewer_with_cells(make_napari_viewer)
    session = get_session(viewer)
    session.set_model(UNet(**TINY), "new")
    session.train_settings = {"batch_size": 2, "patch_size": 32, "augment": False,
                              "device": "cpu"}
    done: list[bool] = []
    worker = retrain(viewer, viewer.layers["img"], viewer.layers["lab"], dense=True,
                     steps=100_000, on_finished=done.append, start=False)
    (run,) = [r for r in _training_run._ACTIVE_RUNS if r.worker is worker]
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        worker.start()
        qtbot.waitUntil(lambda: run.last is not None, timeout=30_000)
        viewer.close()
    qtbot.waitUntil(lambda: not run.busy, timeout=10_000)
    assert run.status == "cancelled" and done == [False]
    assert run._viewer_closed  # told by the window (napari's own task cancel is not enough)
    assert run.last.step < 100_000


def test_training_loop_halves_batch_after_oom(monkeypatch):
    calls: list[TrainConfig] = []

    def fake_train(model, images, labels, cfg):
        calls.append(cfg)
        for step in range(1, cfg.steps + 1):
            if len(calls) == 1 and step == 4:
                raise torch.OutOfMemoryError("CUDA out of memory")
            yield TrainProgress(step, cfg.steps, 1.0 / step, 1e-3, 0.0, 0.0, "cuda")

    monkeypatch.setattr(_training_run, "train", fake_train)
    out = list(training_loop(None, [], [], TrainConfig(steps=10, batch_size=8)))
    notices = [o for o in out if isinstance(o, str)]
    steps = [o.step for o in out if not isinstance(o, str)]
    assert [c.batch_size for c in calls] == [8, 4]
    assert calls[1].steps == 7  # the 3 finished steps are kept
    assert steps == list(range(1, 11))
    assert len(notices) == 1 and "batch size 4" in notices[0]

    calls.clear()

    def always_oom(model, images, labels, cfg):
        calls.append(cfg)
        raise torch.OutOfMemoryError("CUDA out of memory")
        yield  # pragma: no cover

    monkeypatch.setattr(_training_run, "train", always_oom)
    with pytest.raises(RuntimeError, match="out of memory with batch size 4"):
        list(training_loop(None, [], [], TrainConfig(steps=10, batch_size=8)))
    assert len(calls) == 2


def test_save_asks_before_overwriting_and_load(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    path = tmp_path / "model.pt"
    assert not widget.save_model_to(str(path))
    assert "No model" in errors[-1]
    model = UNet(**TINY)
    get_session(viewer).set_model(model, "new")
    assert widget.save_model_to(str(path))
    other = UNet(**{**TINY, "base_channels": 6})
    save_model(other, tmp_path / "other.pt")
    path.write_bytes((tmp_path / "other.pt").read_bytes())
    asked: list[str] = []
    assert not widget.save_model_to(str(path), confirm=lambda p: asked.append(p) or False)
    assert asked == [str(path)]
    assert load_model(path).base_channels == 6  # refused: untouched
    assert widget.save_model_to(str(path), confirm=lambda p: True)
    assert load_model(path).base_channels == 4

    # loading: a bad file is a notification, a good one becomes the model to continue
    get_session(viewer).set_model(None, "none")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert not widget.load_checkpoint(str(bad))
    assert "Cannot load" in errors[-1] and get_session(viewer).model is None
    save_model(UNet(**TINY), tmp_path / "good.pt")
    assert widget.load_checkpoint(str(tmp_path / "good.pt"))
    assert get_session(viewer).source.startswith("checkpoint: ")
    assert widget.source_combo.currentIndex() == train_mod.SOURCE_CONTINUE


def test_retrain_fine_tunes_session_model_and_updates_overlay(make_napari_viewer, qtbot, errors):
    viewer = _viewer_with_cells(make_napari_viewer)
    session = get_session(viewer)
    base = UNet(**TINY)
    session.set_model(base, "new")
    session.train_settings = {"learning_rate": 0.01, "batch_size": 2, "patch_size": 32,
                              "augment": False, "device": "cpu", "steps": 999}
    changes: list[object] = []
    session.model_changed.connect(changes.append)
    done: list[bool] = []
    worker = retrain(viewer, viewer.layers["img"], viewer.layers["lab"], dense=True, steps=5,
                     on_finished=done.append, start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: done != [], timeout=60_000)
    assert done == [True] and errors == []
    assert session.model is not base and changes == [session.model]
    assert session.model.metadata["training"]["steps_completed"] == 5
    before = {k: v for k, v in base.state_dict().items() if v.dtype.is_floating_point}
    after = session.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert viewer.layers["img instances"].data.shape == (96, 96)

    # unusable labels: a notification, no worker, on_finished(False)
    viewer.add_labels(np.zeros((96, 96), np.int32), name="empty")
    done.clear()
    assert retrain(viewer, viewer.layers["img"], viewer.layers["empty"],
                   on_finished=done.append) is None
    assert done == [False] and "no labels painted" in errors[0]


def test_retrain_takes_the_labels_as_corrections_of_a_trained_model(
    make_napari_viewer, qtbot, errors
):
    """Retrain keeps a trained model's answer wherever nothing was corrected (full distillation,
    the corrections' weight anchor), so one removed object is enough to retrain on. Sparse
    clicks train with the live recipe (core.retrain); labels made from the prediction (dense)
    fine-tune at the gentle rate when no training settings are known."""
    from napari_unet.core.live import LIVE_LEARNING_RATE, LiveSettings

    viewer = _viewer_with_cells(make_napari_viewer)
    cells = viewer.layers["lab"].data
    viewer.add_labels(np.where(cells == cells.max(), 1, 0), name="fixes")  # one object removed
    session = get_session(viewer)
    trained = UNet(**TINY)
    trained.metadata = {"training": {"steps": 10}}  # as left by an earlier training run
    session.set_model(trained, "trained")
    session.train_settings = {"batch_size": 2, "patch_size": 32, "device": "cpu"}
    progress: list[int] = []
    worker = retrain(viewer, viewer.layers["img"], viewer.layers["fixes"], steps=3, start=False,
                     on_progress=lambda p: progress.append(p.step))
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: session.model is not trained, timeout=60_000)
    qtbot.waitUntil(lambda: session.busy_message() is None, timeout=60_000)  # its prediction
    assert errors == []
    assert progress == [1, 2, 3]
    used = session.model.metadata["training"]
    assert used["recipe"] == "live corrections" and used["steps_completed"] == 3
    assert used["distill_weight"] == DEFAULT_DISTILL_WEIGHT
    assert used["anchor"] == CORRECTION_ANCHOR == LiveSettings().anchor
    assert used["learning_rate"] == LIVE_LEARNING_RATE
    assert used["correction_weight"] == LiveSettings().correction_weight > 1

    dense_model = session.model
    worker = retrain(viewer, viewer.layers["img"], viewer.layers["fixes"], dense=True, steps=2,
                     start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: session.model is not dense_model, timeout=60_000)
    qtbot.waitUntil(lambda: session.busy_message() is None, timeout=60_000)
    assert errors == []
    used = session.model.metadata["training"]
    assert "recipe" not in used and used["dense"] and used["anchor"] == 0.0
    assert used["learning_rate"] == train_mod.FINE_TUNE_LEARNING_RATE


def test_a_starting_model_that_disagrees_with_the_labels_gets_a_hint(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    viewer = _viewer_with_cells(make_napari_viewer)
    untrained = UNet(**TINY)
    untrained.metadata = {"training": {"steps": 0}}  # "trained", but it knows nothing
    get_session(viewer).set_model(untrained, "loaded")
    infos: list[str] = []
    monkeypatch.setattr(_notify, "notify_info", infos.append)
    widget = _tiny_widget(viewer, steps=2)
    widget.source_combo.setCurrentIndex(train_mod.SOURCE_CONTINUE)
    worker = widget.start_training(start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert errors == []
    assert get_session(viewer).model.metadata["training"]["start_trust"] < 0.2
    assert any("new model" in message for message in infos), infos


def test_fine_tunes_the_shipped_starting_model_by_default(make_napari_viewer, qtbot, errors):
    from napari_unet.models import load_pretrained

    viewer = _viewer_with_cells(make_napari_viewer)
    widget = _tiny_widget(viewer, steps=2)
    widget.source_combo.setCurrentIndex(train_mod.SOURCE_PRETRAINED)
    assert widget.learning_rate.value() == train_mod.FINE_TUNE_LEARNING_RATE  # gentle fine-tune
    widget.patch_size.setValue(0)  # the model's own default patch
    worker = widget.start_training(start=False)
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert errors == []
    start, tuned = load_pretrained(), get_session(viewer).model
    assert tuned.config == start.config
    assert any(
        not value.equal(start.state_dict()[name])
        for name, value in tuned.state_dict().items()
        if value.is_floating_point()
    )


# -- one training at a time (issue 13) ----------------------------------------------------------
def test_session_allows_one_training_at_a_time():
    from napari_unet.widgets._session import ModelSession, TrainingBusyError

    session = ModelSession()
    seen: list[object] = []
    session.training_changed.connect(seen.append)
    assert session.busy_message() is None
    session.begin_training("Train U-Net")
    with pytest.raises(TrainingBusyError, match="Train U-Net is already training"):
        session.begin_training("Retrain (Annotate)")
    assert "cancel it there" in session.busy_message()
    session.end_training("Retrain (Annotate)")  # not the holder: nothing happens
    assert session.training == "Train U-Net"
    session.end_training("Train U-Net")
    assert session.training is None and seen == ["Train U-Net", None]


def test_train_and_retrain_exclude_each_other(make_napari_viewer, qtbot, errors, monkeypatch):
    """While Train runs, Retrain is disabled (tooltip says why) and refused in the engine layer,
    and the other way round; both come back when the run ends."""
    from napari_unet.widgets._session import TrainingBusyError
    from napari_unet.widgets.annotate import AnnotateWidget

    warnings_seen: list[str] = []
    monkeypatch.setattr(_notify, "notify_warning", warnings_seen.append)
    viewer = _viewer_with_cells(make_napari_viewer)
    widget = _tiny_widget(viewer, steps=2)
    annotate = AnnotateWidget(viewer)
    session = get_session(viewer)

    worker = widget.start_training(start=False)
    assert worker is not None and session.training == train_mod.TRAIN_OWNER
    assert not widget.train_button.isEnabled() and widget.cancel_button.isEnabled()
    assert not annotate._retrain_button.enabled
    assert "Train U-Net is already training" in annotate._retrain_button.tooltip
    assert retrain(viewer, viewer.layers["img"], viewer.layers["lab"], dense=True) is None
    assert "Train U-Net is already training" in warnings_seen[-1]
    with pytest.raises(TrainingBusyError):
        _training_run.TrainingRun(viewer, UNet(**TINY), [], [], TrainConfig(steps=1))
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert session.training is None and widget.train_button.isEnabled()
    assert annotate._retrain_button.enabled

    # and the other way round: a retrain disables Train and refuses start_training
    worker = retrain(viewer, viewer.layers["img"], viewer.layers["lab"], dense=True, steps=2,
                     start=False)
    assert worker is not None and session.training == train_mod.RETRAIN_OWNER
    assert not widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert "Retrain (Annotate) is already training" in widget.train_button.toolTip()
    assert "Retrain (Annotate)" in widget.status.text()
    assert widget.start_training() is None and not widget.busy
    assert "Retrain (Annotate) is already training" in warnings_seen[-1]
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: session.training is None, timeout=60_000)
    assert widget.train_button.isEnabled() and widget.status.text() == ""
    assert errors == []


def test_retrain_after_only_removals_does_not_warn(make_napari_viewer, qtbot, errors,
                                                   monkeypatch):
    """Removed objects alone (only background painted) with a trained model: the unlabeled
    pixels keep the model's answer, so neither the GUI-thread check nor the worker warns that
    "the network only sees background"; other data warnings are not repeated by the worker."""
    warnings_seen: list[str] = []
    monkeypatch.setattr(_notify, "notify_warning", warnings_seen.append)
    viewer = _viewer_with_cells(make_napari_viewer)
    cells = viewer.layers["lab"].data
    viewer.add_labels(np.where(cells == cells.max(), 1, 0), name="removed")
    session = get_session(viewer)
    trained = UNet(**TINY)
    trained.metadata = {"training": {"steps": 10}}
    session.set_model(trained, "trained")
    session.train_settings = {"batch_size": 2, "patch_size": 32, "device": "cpu"}
    from napari.utils.notifications import notification_manager

    relayed: list[tuple] = []  # what napari's own relay of worker warnings would show
    monkeypatch.setattr(notification_manager, "receive_warning", lambda *a: relayed.append(a))
    worker = retrain(viewer, viewer.layers["img"], viewer.layers["removed"], steps=2,
                     start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: session.training is None, timeout=60_000)
    assert errors == [] and session.model is not trained
    assert not [m for m in warnings_seen if "only sees" in m], warnings_seen
    assert all("only sees" not in str(args[0]) for args in relayed)

    # without a trained model one class is not enough: an error, as before
    session.set_model(UNet(**TINY), "new")
    assert retrain(viewer, viewer.layers["img"], viewer.layers["removed"]) is None
    assert "no cells labeled" in errors[-1]


def test_worker_does_not_repeat_the_data_warnings(make_napari_viewer, qtbot, errors,
                                                  monkeypatch):
    """train() repeats collect_training_data's checks in the worker: shown once, not twice."""
    warnings_seen: list[str] = []
    monkeypatch.setattr(_notify, "notify_warning", warnings_seen.append)
    viewer = _viewer_with_cells(make_napari_viewer)
    viewer.add_image(np.full((96, 96), 0.5, np.float32), name="flat")
    get_session(viewer).train_settings = {"batch_size": 2, "patch_size": 32, "device": "cpu",
                                          "augment": False}
    worker = retrain(viewer, viewer.layers["flat"], viewer.layers["lab"], dense=True, steps=1,
                     start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    qtbot.waitUntil(lambda: get_session(viewer).training is None, timeout=60_000)
    assert [m for m in warnings_seen if "constant" in m] == ["flat: the image is constant"]


def test_save_model_as_a_bioimageio_package(make_napari_viewer, qtbot, tmp_path, errors):
    from napari_unet.core.bioimageio import load_any

    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    model = UNet(**TINY)
    model.metadata["threshold"] = 0.4
    get_session(viewer).set_model(model, "trained")
    path = tmp_path / "shared.zip"
    assert widget.save_model_to(str(path), start=False)
    with qtbot.waitSignal(widget.export_worker.finished, timeout=120_000):
        widget.export_worker.start()
    assert errors == []
    loaded = load_any(path)
    assert loaded.metadata["threshold"] == 0.4
    assert loaded.config == model.config


def test_object_diameter_field_sets_the_training_scale(make_napari_viewer, qtbot, errors):
    """0 = measured from the labels; a given diameter is recorded as the data's object size."""
    viewer = _viewer_with_cells(make_napari_viewer)
    widget = _tiny_widget(viewer, steps=2)
    assert widget.config().diameter is None
    widget.diameter.setValue(30)
    assert widget.config().diameter == 30.0
    worker = widget.start_training(start=False)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert errors == []
    assert get_session(viewer).model.metadata["scale"]["data_diameter"] == 30.0
