import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from napari_unet.core.instances import (
    follow_annotations,
    label_instances,
    remove_small,
    split_at_cells,
)

YY, XX = np.mgrid[:100, :120]


def disc(cy, cx, r):
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r * r


def soft(mask, lo=0.1, hi=0.9):
    return np.where(mask, hi, lo).astype(np.float32)


@pytest.mark.parametrize("gap", [30, 26, 22])
def test_two_touching_discs_are_split(gap):
    prob = soft(disc(50, 40, 15) | disc(50, 40 + gap, 15))
    lab = label_instances(prob)
    assert lab.dtype == np.int32
    assert lab.max() == 2
    np.testing.assert_array_equal(np.unique(lab), [0, 1, 2])
    # each disc centre belongs to a different object, and each object is about one disc
    assert lab[50, 40] != lab[50, 40 + gap]
    sizes = np.bincount(lab.ravel())[1:]
    assert sizes.min() > 0.35 * sizes.sum()


@pytest.mark.parametrize("axes", [(40, 12), (30, 20), (50, 6), (20, 20)])
def test_convex_blob_is_not_split(axes):
    a, b = axes
    ellipse = ((YY - 50) / b) ** 2 + ((XX - 60) / a) ** 2 <= 1
    lab = label_instances(soft(ellipse))
    assert lab.max() == 1
    np.testing.assert_array_equal(lab > 0, ellipse)


def test_rectangle_is_not_split():
    rect = (np.abs(YY - 50) < 10) & (np.abs(XX - 60) < 50)
    assert label_instances(soft(rect)).max() == 1


def test_noise_ring_leaves_no_tiny_objects():
    rng = np.random.default_rng(0)
    r = np.hypot(YY - 50, XX - 60)
    prob = ((r > 30) & (r < 33) & (rng.random(r.shape) < 0.08)).astype(np.float32)
    assert label_instances(prob, min_size=15).max() == 0
    dense = ((r > 30) & (r < 33) & (rng.random(r.shape) < 0.4)).astype(np.float32)
    lab = label_instances(dense, min_size=15)
    sizes = np.bincount(lab.ravel())[1:]
    assert np.all(sizes >= 15)


def test_threshold_min_size_fill_holes_and_no_split():
    prob = np.zeros((100, 120), np.float32)
    prob[disc(30, 30, 10)] = 0.7
    prob[disc(30, 30, 3)] = 0.2  # hole
    prob[disc(70, 90, 2)] = 0.9  # 13 pixels < min_size
    prob[disc(70, 30, 8)] = 0.55
    lab = label_instances(prob, threshold=0.5, min_size=15)
    assert lab.max() == 2
    assert lab[30, 30] > 0  # hole filled
    assert lab[70, 90] == 0
    lab = label_instances(prob, threshold=0.6, fill_holes=False)
    assert lab.max() == 1 and lab[30, 30] == 0
    touching = soft(disc(50, 40, 15) | disc(50, 66, 15))
    assert label_instances(touching, split_touching=False).max() == 1


def test_class_probabilities_and_stacks():
    cell = soft(disc(50, 40, 15) | disc(50, 66, 15))
    classes = np.stack([1 - cell, cell])  # (n_classes, Y, X): sums to 1
    np.testing.assert_array_equal(label_instances(classes), label_instances(cell))
    stack = np.stack([cell, soft(disc(20, 20, 8)), np.zeros_like(cell)])  # (Z, Y, X)
    lab = label_instances(stack)
    assert lab.shape == stack.shape
    assert set(np.unique(lab[0])) == {0, 1, 2}
    assert set(np.unique(lab[1])) == {0, 3}
    assert lab[2].max() == 0
    zc = np.stack([classes, classes])  # (Z, n_classes, Y, X)
    lab4 = label_instances(zc)
    assert lab4.shape == (2, 100, 120) and lab4.max() == 4
    # explicit override: a 2-slice stack whose slices happen to sum to 1
    lab_stack = label_instances(classes, stack=True)
    assert lab_stack.shape == (2, 100, 120)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 6))
def test_ids_are_sequential_and_cover_the_mask(seed, n):
    rng = np.random.default_rng(seed)
    mask = np.zeros((100, 120), bool)
    for _ in range(n):
        mask |= disc(rng.integers(10, 90), rng.integers(10, 110), rng.integers(5, 14))
    lab = label_instances(soft(mask), min_size=15)
    ids = np.unique(lab[lab > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    # every kept pixel comes from the mask (holes enclosed by cells are filled on purpose);
    # every object respects min_size
    assert not np.any((lab > 0) & ~ndi.binary_fill_holes(mask))
    assert np.all(np.bincount(lab.ravel())[1:] >= 15)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 3, 4, 5, 6)), np.full((8, 8), np.nan), np.zeros((8, 8), dtype=object)],
)
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        label_instances(bad)


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        label_instances(np.zeros((8, 8)), min_size=-1)
    with pytest.raises(ValueError):
        label_instances(np.zeros((8, 8)), min_distance=-2)


def test_recovers_touching_synthetic_cells():
    from napari_unet.core.metrics import matching
    from napari_unet.core.synthetic import make_cells

    _, gt = make_cells((128, 128), 12, seed=1)
    prob = (gt > 0).astype(np.float32)
    split = matching(label_instances(prob), gt)
    merged = matching(label_instances(prob, split_touching=False), gt)
    assert split["accuracy"] >= 0.9
    assert split["accuracy"] >= merged["accuracy"]


def test_remove_small_drops_pieces_by_size_and_connectivity():
    mask = np.zeros((8, 8), bool)
    mask[1, 1] = mask[2, 2] = True  # touching only diagonally
    mask[4:7, 4:7] = True
    assert remove_small(mask, 2).sum() == 11  # 8-connected: the diagonal pair is one piece
    kept = remove_small(mask, 2, diagonal=False)
    assert kept.sum() == 9 and not kept[1, 1]
    assert remove_small(mask, 1) is mask
    assert not remove_small(mask, 10).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), min_size=st.sampled_from([0, 15]))
def test_one_peak_shortcut_labels_as_the_full_marker_search(seed, n, min_size):
    """Components with one distance peak skip the h-maxima search; the labels must not change."""
    from unittest import mock

    from napari_unet.core import instances

    rng = np.random.default_rng(seed)
    mask = np.zeros((100, 120), bool)
    for _ in range(n):  # touching, overlapping and isolated discs, some ellipse-like pairs
        mask |= disc(rng.integers(10, 90), rng.integers(10, 110), rng.integers(4, 14))
    prob = soft(mask)
    fast = label_instances(prob, min_size=min_size)
    never = mock.patch.object(instances, "_single_peak", lambda s, m, c, n: np.zeros(n + 1, bool))
    with never:
        full = label_instances(prob, min_size=min_size)
    np.testing.assert_array_equal(fast, full)


def test_one_peak_shortcut_is_taken_for_isolated_discs():
    from napari_unet.core import instances

    mask = disc(30, 30, 10) | disc(30, 90, 8) | disc(70, 40, 12) | disc(70, 52, 12)
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0) * mask
    comp, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    single = instances._single_peak(dist, mask, comp, n)
    assert n == 3 and single[1:].tolist().count(True) == 2  # the touching pair is searched


def test_a_disc_beside_a_touching_pair_adds_no_marker_to_it():
    """An isolated disc 2 px from a touching pair: three cells, not four (markers stay home)."""
    mask = disc(50, 40, 12) | disc(50, 62, 12)
    for gap in (2, 3):
        lab = label_instances(soft(mask | disc(50, 62 + 12 + gap + 8, 8)), min_size=0)
        assert lab.max() == 3


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_an_annotated_cell_is_split_from_the_neighbour_it_was_merged_with():
    a, b = disc(50, 40, 15), disc(50, 68, 15)  # merged: one predicted object
    merged = (a | b).astype(np.int32)
    cells = np.where(disc(50, 40, 12), 7, 0)  # the user's (smaller) mask of the left cell
    out = split_at_cells(merged, cells, min_size=30)
    assert out.max() == 2
    left, right = out == out[50, 40], out == out[50, 68]
    assert _iou(left, a) > 0.9 and _iou(right, b) > 0.9


def test_a_partial_click_mask_does_not_cut_its_cell_in_two():
    a = disc(50, 40, 15)
    cells = np.where(a & (XX < 40), 2, 0)  # half of the cell annotated
    out = split_at_cells(a.astype(np.int32), cells, min_size=30)
    np.testing.assert_array_equal(out, a.astype(np.int32))


def test_objects_away_from_the_annotations_and_the_foreground_are_kept():
    a, b, c = disc(50, 30, 12), disc(50, 56, 12), disc(20, 100, 8)
    inst = np.zeros(a.shape, np.int32)
    inst[a | b], inst[c] = 1, 2
    cells = np.where(disc(50, 30, 10) | disc(80, 100, 6), 3, 0)  # the second one off the mask
    out = split_at_cells(inst, cells, min_size=30)
    np.testing.assert_array_equal(out > 0, inst > 0)  # the network's foreground, untouched
    assert len(np.unique(out[c])) == 1 and out[20, 100] > 0
    assert out[50, 30] != out[50, 56] and out[50, 30] > 0
    np.testing.assert_array_equal(split_at_cells(inst, np.zeros_like(inst), 30), inst)


def test_split_at_cells_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same 2D shape"):
        split_at_cells(np.zeros((5, 5), np.int32), np.zeros((5, 6), np.int32))


def test_follow_annotations_shows_every_edit_and_the_network_elsewhere():
    a, b, c, d = disc(50, 30, 12), disc(50, 56, 12), disc(20, 100, 8), disc(80, 100, 7)
    inst = np.zeros(a.shape, np.int32)
    inst[disc(50, 30, 8) | b] = 1  # the network: a too small and merged with b
    inst[c] = 2  # a false object, which the user removed
    cells = np.where(a, 5, 0) + np.where(d, 9, 0)  # a (the whole cell), d (missed entirely)
    out = follow_annotations(inst, cells, background=c, min_size=30)
    assert out[c].max() == 0  # removed stays removed
    for cell in (a, d):  # each annotated cell is one object of its own, as painted
        ids = np.unique(out[cell])
        assert len(ids) == 1 and ids[0] > 0 and _iou(out == ids[0], cell) > 0.9
    assert _iou(out == out[50, 56], b) > 0.85  # the rest is the network's neighbour
    same = follow_annotations(inst, np.zeros_like(inst))  # no edits: the network's objects
    np.testing.assert_array_equal(same > 0, inst > 0)  # (each connected piece one object)
    assert same.max() == ndi.label(inst > 0)[1] and len(np.unique(same[b])) == 1
