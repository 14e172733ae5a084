"""Live training: annotations enter while it runs, recent corrections weigh, it learns them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.live import REVERTS, LiveSettings, LiveTrainer
from napari_unet.core.model import UNet
from napari_unet.core.scale import default_diameter
from napari_unet.core.segment import segment
from napari_unet.core.synthetic import make_cells
from napari_unet.models import load_pretrained


def _tiny() -> UNet:
    torch.manual_seed(0)
    return UNet(in_channels=1, depth=2, base_channels=4, padding="same")


def _sparse(truth: np.ndarray, cells: int = 2) -> np.ndarray:
    """Two cells (ids >= 2) and a background patch far from them."""
    labels = np.zeros(truth.shape, np.int32)
    for k, i in enumerate(np.unique(truth[truth > 0])[:cells]):
        labels[truth == i] = k + 2
    labels[:8, :8][truth[:8, :8] == 0] = 1
    return labels


def test_waits_for_annotations_then_trains():
    image, truth = make_cells((64, 64), n_cells=5, seed=1)
    trainer = LiveTrainer(_tiny(), image, LiveSettings(batch_size=1, device="cpu"))
    assert trainer.step() is None and trainer.message == "waiting for annotations"
    trainer.update(_sparse(truth))
    loss = trainer.step()
    assert loss is not None and np.isfinite(loss) and trainer.steps == 1
    model = trainer.close()
    assert not model.training and model.metadata["training"]["live"]["steps"] == 1


def test_annotations_are_the_ones_trained_on_in_the_region():
    image, truth = make_cells((64, 64), n_cells=5, seed=1)
    trainer = LiveTrainer(_tiny(), image, LiveSettings(batch_size=1, device="cpu"))
    assert trainer.annotations() is None
    labels = _sparse(truth)
    trainer.update(labels)
    trainer.step()
    edits = trainer.annotations((slice(0, 32), slice(4, 64)))
    np.testing.assert_array_equal(edits.cells > 0, labels[:32, 4:] >= 2)
    np.testing.assert_array_equal(edits.background, labels[:32, 4:] == 1)


def test_update_checks_the_shape():
    image, truth = make_cells((64, 64), n_cells=5, seed=1)
    trainer = LiveTrainer(_tiny(), image)
    with pytest.raises(ValueError, match="does not match"):
        trainer.update(truth[:10])
    with pytest.raises(ValueError, match="recent_fraction"):
        LiveSettings(recent_fraction=2.0).validate()


def test_patches_centre_on_recent_corrections():
    """With ``recent_fraction=1`` every patch centre lies on a corrected pixel."""
    image, truth = make_cells((96, 96), n_cells=8, seed=2)
    labels = _sparse(truth)
    trainer = LiveTrainer(_tiny(), image, LiveSettings(recent_fraction=1.0, device="cpu"))
    trainer.update(labels)
    changed = np.zeros(labels.shape, bool)
    changed[60:70, 60:70] = True
    labels[changed] = 1
    trainer.update(labels, changed)
    trainer.step()
    assert trainer.corrections == 1
    for _ in range(50):
        _, cy, cx = trainer._sampler._centre()
        assert changed[cy, cx]


def test_corrected_pixels_weigh_more():
    """The same patches, with and without the correction weight: x3 on corrected pixels."""
    image, truth = make_cells((64, 64), n_cells=5, seed=3)
    labels = _sparse(truth)
    changed = labels > 0
    weights = []
    for boost in (1.0, 3.0):
        trainer = LiveTrainer(_tiny(), image, LiveSettings(correction_weight=boost, seed=0))
        trainer.cfg.augment = False
        trainer.update(labels, changed)
        trainer.step()
        trainer._sampler.rng = np.random.default_rng(5)
        weights.append(trainer._sampler.sample()[2])
    plain, boosted = weights
    assert plain.sum() > 0
    np.testing.assert_allclose(boosted, plain * 3.0, rtol=1e-6)


def test_region_prediction_equals_the_whole_image():
    image, truth = make_cells((96, 96), n_cells=8, seed=4)
    trainer = LiveTrainer(_tiny(), image)
    trainer.update(_sparse(truth))
    trainer.step()
    whole, _, region = trainer.predict()
    assert whole.shape == image.shape and region == (slice(0, 96), slice(0, 96))
    part, _, region = trainer.predict((slice(20, 60), slice(-5, 40)))
    assert region == (slice(20, 60), slice(0, 40))
    np.testing.assert_allclose(part, whole[20:60, 0:40], atol=1e-5)


def test_learns_a_removed_object_and_keeps_the_others(debris):
    """The shipped model calls a bright square a cell; marked as background, 20 live steps
    remove it while the real cells stay."""
    image, square = debris
    model = load_pretrained()
    seg = segment(model, image)
    assert seg.probability[square].mean() > 0.9
    cells = (seg.instances > 0) & ~square
    labels = np.zeros(image.shape, np.int32)
    labels[square] = 1
    torch.set_num_threads(1)
    trainer = LiveTrainer(model, image, LiveSettings(batch_size=2))
    trainer.update(labels, square)
    for _ in range(20):
        trainer.step()
    fg, _, _ = trainer.predict()
    assert fg[square].mean() < 0.5
    assert fg[cells].mean() > 0.9


def test_replay_patches_fall_anywhere_and_carry_no_labels():
    """With ``replay_fraction=1`` patches are drawn over the whole image, labeled or not."""
    image, truth = make_cells((160, 160), n_cells=8, seed=2)
    labels = np.zeros(truth.shape, np.int32)
    labels[:6, :6] = 1  # one small labeled corner
    model = load_pretrained()  # a trained model: unlabeled pixels are distilled
    trainer = LiveTrainer(model, image, LiveSettings(replay_fraction=1.0, device="cpu"))
    trainer.update(labels)
    trainer.step()
    empty = sum(not trainer._sampler.sample()[2].any() for _ in range(12))
    assert empty >= 6  # most replayed patches miss the corner: distillation only


def test_given_factor_sets_the_scale_of_training_and_prediction():
    image, truth = make_cells((96, 96), n_cells=6, seed=5)
    model = load_pretrained()
    trainer = LiveTrainer(model, image, LiveSettings(device="cpu"), factor=0.5)
    trainer.update(_sparse(truth))
    trainer.step()
    assert trainer.factor == 0.5 and trainer._scaled_image.shape[-2:] == (48, 48)
    fg, _, _ = trainer.predict()
    assert fg.shape == image.shape
    closed = trainer.close()
    # the nuclei model records no data scale: its predictions keep estimating it (finding K5)
    assert "data_diameter" not in closed.metadata["scale"]
    assert default_diameter(closed) == "auto"
    recorded = load_pretrained()
    recorded.metadata["scale"]["data_diameter"] = 17.9  # a model that records its data's size
    trainer = LiveTrainer(recorded, image, LiveSettings(device="cpu"), factor=0.5)
    trainer.update(_sparse(truth))
    trainer.step()
    closed = trainer.close()
    assert closed.metadata["scale"]["data_diameter"] == pytest.approx(
        closed.metadata["scale"]["object_diameter"] / 0.5)
    with pytest.raises(ValueError, match="factor"):
        LiveTrainer(load_pretrained(), image, factor=-1.0)


def test_kept_cells_measures_what_the_start_model_found_off_the_labels():
    """1.0 for the start prediction itself, 0.0 for one that finds nothing; None before the
    first step and for a new network (nothing to keep)."""
    image, truth = make_cells((128, 128), n_cells=8, seed=6)
    trainer = LiveTrainer(load_pretrained(), image, LiveSettings(device="cpu"))
    trainer.update(_sparse(truth))
    whole = (slice(0, 128), slice(0, 128))
    assert trainer.kept_cells(np.ones(image.shape, np.float32), whole) is None
    trainer.step()
    fg0 = trainer._start_cells.astype(np.float32)
    assert trainer.kept_cells(fg0, whole) == 1.0
    assert trainer.kept_cells(np.zeros(image.shape, np.float32), whole) == 0.0
    fresh = LiveTrainer(_tiny(), image, LiveSettings(device="cpu"))
    fresh.update(_sparse(truth))
    fresh.step()
    assert fresh.kept_cells(fg0, whole) is None



def test_start_probability_given_is_what_kept_cells_compares_against(monkeypatch):
    """The prediction being corrected stands for the start model's cells: the first step
    predicts nothing more, and a probability of another shape is refused."""
    image, truth = make_cells((128, 128), n_cells=8, seed=6)
    given = (truth > 0).astype(np.float32)
    trainer = LiveTrainer(load_pretrained(), image, LiveSettings(device="cpu"),
                          start_probability=given)
    trainer.update(_sparse(truth))
    calls = []
    monkeypatch.setattr(trainer, "predict", lambda *a, **k: calls.append(a))
    trainer.step()
    assert calls == []
    np.testing.assert_array_equal(trainer._start_cells, truth > 0)
    whole = (slice(0, 128), slice(0, 128))
    assert trainer.kept_cells(given, whole) == 1.0
    with pytest.raises(ValueError, match="start_probability"):
        LiveTrainer(load_pretrained(), image, start_probability=given[:64])


def _distance(model: torch.nn.Module, weights: dict) -> float:
    return float(sum((p.detach() - weights[k]).abs().sum()
                     for k, p in model.state_dict().items() if p.is_floating_point()))


def test_undoing_a_correction_undoes_what_was_learned_from_it():
    """Annotations back to those of before the last correction (napari's Ctrl+Z): the next
    step starts from the weights of before it; an edit undone before it trained changes
    nothing; the weights of REVERTS corrections are kept."""
    image, truth = make_cells((96, 96), n_cells=6, seed=5)
    trainer = LiveTrainer(_tiny(), image, LiveSettings(learning_rate=1e-2, device="cpu"))
    first, second = _sparse(truth, cells=1), _sparse(truth, cells=3)
    trainer.update(first)
    for _ in range(5):
        trainer.step()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.update(second, second != first)
    for _ in range(10):
        trainer.step()
    assert trainer.corrections == 1
    moved = _distance(trainer.model, before)
    trainer.update(first, second != first)  # the undo
    trainer.cfg.learning_rate = 1e-7  # the step after the restore barely moves the weights
    trainer.step()
    assert _distance(trainer.model, before) < 1e-3 * moved
    assert trainer.corrections == 0 and trainer.message.startswith("undone")
    np.testing.assert_array_equal(trainer._labeled, first > 0)
    trainer.update(second, second != first)
    trainer.update(first, second != first)  # undone before any step: nothing new
    trainer.step()
    assert trainer.corrections == 0 and len(trainer._before) == 0
    labels = first.copy()
    for k in range(REVERTS + 2):
        labels = labels.copy()
        labels[40 + k, 40:50] = 1
        trainer.update(labels, labels != first)
        trainer.step()
    assert len(trainer._before) == REVERTS


@pytest.mark.parametrize("threshold", [0.8, 0.3])
def test_threshold_frame_puts_the_loss_boundary_at_the_models_threshold(threshold):
    """With ``threshold_frame``, a pixel whose cell probability equals the fine-tuned model's
    threshold sits at 0.5 in the labeled loss; without it, or for a new network, unchanged."""
    image, _ = make_cells((64, 64), n_cells=5, seed=1)
    model = load_pretrained()
    model.metadata["threshold"] = threshold
    p_bg = 1.0 - threshold
    logits = torch.log(torch.tensor([p_bg, threshold])).view(1, 2, 1, 1)
    on = LiveTrainer(model, image, LiveSettings(threshold_frame=True, device="cpu"))
    adjusted = torch.softmax(on._at_threshold(logits), dim=1)
    assert torch.allclose(adjusted, torch.full_like(adjusted, 0.5), atol=1e-6)
    off = LiveTrainer(model, image, LiveSettings(device="cpu"))
    assert torch.equal(off._at_threshold(logits), logits)
    new = LiveTrainer(_tiny(), image, LiveSettings(threshold_frame=True, device="cpu"))
    assert torch.equal(new._at_threshold(logits), logits)


def test_anchor_holds_the_weights_near_where_the_session_started():
    """The same 20 steps move the weights less the stronger the anchor; 0 is no pull."""
    image, truth = make_cells((96, 96), n_cells=6, seed=5)
    moved = {}
    for anchor in (0.0, 30.0, 3000.0):
        model = _tiny()
        model.metadata["training"] = {"steps": 1}  # a trained model (a new one is not held)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = LiveTrainer(model, image, LiveSettings(learning_rate=1e-2, anchor=anchor,
                                                         device="cpu"))
        trainer.update(_sparse(truth, cells=3))
        for _ in range(20):
            trainer.step()
        moved[anchor] = _distance(trainer.close(), start)
    assert moved[0.0] > 1.2 * moved[30.0] > 0
    assert moved[3000.0] < 0.25 * moved[0.0]
    new = _tiny()
    start = {k: v.clone() for k, v in new.state_dict().items()}
    trainer = LiveTrainer(new, image, LiveSettings(learning_rate=1e-2, anchor=3000.0,
                                                   device="cpu"))
    trainer.update(_sparse(truth, cells=3))
    for _ in range(20):
        trainer.step()
    assert _distance(trainer.close(), start) > 0.5 * moved[0.0]
    with pytest.raises(ValueError, match="anchor"):
        LiveSettings(anchor=-1.0).validate()
