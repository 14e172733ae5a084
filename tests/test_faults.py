"""Bad input and faults: nothing lost, nothing half done, no traceback (issue 15).

One test per promise; each names the case it keeps. Tiny networks, few steps, tiny images.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_unet import cli
from napari_unet.core.checkpoint import load_model, save_model
from napari_unet.core.io import atomic_write, read_image, write_array
from napari_unet.core.model import UNet
from napari_unet.core.synthetic import make_cells

TINY = ["--depth", "1", "--width", "4", "--patch-size", "16", "--batch-size", "1"]
QUIET = ["--no-augment", "--device", "cpu", "--seed", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 64x64 image with complete labels, and a tiny untrained model on disk."""
    root = tmp_path_factory.mktemp("faults")
    image, labels = make_cells((64, 64), 4, seed=0)
    write_array(root / "img.tif", image)
    write_array(root / "lab.tif", labels)
    torch.manual_seed(0)
    save_model(UNet(depth=1, base_channels=4), root / "model.pt")
    return root


def _train(data, out, *extra):
    args = ["train", str(data / "img.tif"), "--labels", str(data / "lab.tif"), "--out", str(out)]
    return cli.main([*args, *TINY, *QUIET, *extra])


def _error(capsys) -> str:
    """The one error line on stderr (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("napari-unet: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# 1 ---------------------------------------------------------------------------------------------
def test_diverged_training_exits_5_and_saves_nothing(data, tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert _train(data, out, "--steps", "3", "--dense-labels", "--lr", "1e9") == 5
    message = _error(capsys)
    assert "diverged" in message and "lower the learning rate" in message and "--lr" in message
    assert _listing(tmp_path) == []
    out.write_bytes(b"good model")  # an existing model is never replaced by a diverged one
    assert _train(data, out, "--steps", "3", "--dense-labels", "--lr", "1e9", "--overwrite") == 5
    _error(capsys)
    assert out.read_bytes() == b"good model" and _listing(tmp_path) == ["m.pt"]

    from napari_unet.core.training import TrainingDiverged  # what the engine raises

    assert issubclass(TrainingDiverged, ValueError)


# 2 ---------------------------------------------------------------------------------------------
def test_predict_4d_image_gives_4d_labels_plane_by_plane(data, tmp_path):
    from napari_unet.core.instances import label_instances
    from napari_unet.core.tiling import predict_tiled

    planes = [make_cells((48, 48), 3, seed=k)[0] for k in range(4)]
    stack = np.stack(planes).reshape(2, 2, 48, 48).astype(np.float32)
    write_array(tmp_path / "in" / "hyper.tif", stack)
    model = load_model(data / "model.pt")
    plane = predict_tiled(model, stack[1, 0], device="cpu", flips=True)[1]  # the default
    threshold = float(np.quantile(plane, 0.7))  # an untrained net: ~30 % foreground
    code = cli.main(
        ["predict", str(data / "model.pt"), str(tmp_path / "in"), "--out", str(tmp_path / "out")]
        + ["--device", "cpu", "--min-size", "5", "--threshold", f"{threshold:.6f}"]
    )
    assert code == 0
    labels = read_image(tmp_path / "out" / "hyper.tif")
    assert labels.shape == (2, 2, 48, 48)
    expected = label_instances(plane, float(f"{threshold:.6f}"), 5)
    np.testing.assert_array_equal(labels[1, 0] > 0, expected > 0)
    ids = [set(np.unique(p[p > 0])) for p in labels.reshape(4, 48, 48)]
    assert all(ids) and not any(ids[i] & ids[j] for i in range(4) for j in range(i))


# 3 ---------------------------------------------------------------------------------------------
def test_train_checks_out_before_any_work_and_save_errors_are_one_line(
    data, tmp_path, capsys, monkeypatch
):
    def no_reading(*args, **kwargs):
        raise AssertionError("data were read before --out was checked")

    with monkeypatch.context() as patch:
        patch.setattr(cli.train, "_read", no_reading)
        assert _train(data, tmp_path / "nodir" / "m.pt", "--steps", "1") == 3
        message = _error(capsys)
        assert "nodir" in message and "does not exist" in message
        (tmp_path / "adir").mkdir()
        assert _train(data, tmp_path / "adir", "--steps", "1", "--overwrite") == 3
        assert "is a folder" in _error(capsys)
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        if os.geteuid() == 0:  # root writes anywhere: act as the user a read-only folder stops
            real_access = os.access

            def access(path, *args, **kwargs):
                return str(path) != str(locked) and real_access(path, *args, **kwargs)

            patch.setattr(os, "access", access)
        assert _train(data, locked / "m.pt", "--steps", "1") == 3
        assert "read-only" in _error(capsys)
        locked.chmod(0o755)
        assert _listing(locked) == []

    def disk_full(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    (tmp_path / "full").mkdir()
    out = tmp_path / "full" / "m.pt"
    out.write_bytes(b"old model")
    monkeypatch.setattr(torch, "save", disk_full)
    assert _train(data, out, "--steps", "1", "--dense-labels", "--overwrite") == 3
    message = _error(capsys)
    assert f"cannot write {out}: No space left on device" in message and ".tmp" not in message
    assert _listing(tmp_path / "full") == ["m.pt"] and out.read_bytes() == b"old model"


# 4 ---------------------------------------------------------------------------------------------
def test_predict_checks_every_input_before_writing_any_output(data, tmp_path, capsys):
    images = tmp_path / "images"
    for name in ("a", "c"):
        write_array(images / f"{name}.tif", np.random.default_rng(1).random((32, 32)))
    (images / "b.tif").write_bytes(b"not a tiff at all")
    out = tmp_path / "out"
    args = ["predict", str(data / "model.pt"), str(images), "--out", str(out), "--device", "cpu"]
    assert cli.main(args) == 4
    assert "b.tif" in _error(capsys)
    assert _listing(out) == []
    good = (images / "a.tif").read_bytes()  # a truncated file: a good header, half the data
    (images / "b.tif").write_bytes(good[: len(good) // 2])
    assert cli.main(args) == 4
    assert "b.tif" in _error(capsys) and _listing(out) == []
    (images / "b.tif").unlink()
    assert cli.main(args) == 0  # the rerun is not refused: nothing was half written
    assert _listing(out) == ["a.tif", "c.tif"]


# 5 ---------------------------------------------------------------------------------------------
def test_publish_never_clobbers_a_file_created_meanwhile(tmp_path, monkeypatch):
    dest = tmp_path / "labels.npy"

    def write_racing(tmp):
        np.save(tmp, np.ones(3))
        dest.write_bytes(b"the other run")  # another process publishes after our exists() check

    with pytest.raises(FileExistsError):
        atomic_write(dest, write_racing)
    assert dest.read_bytes() == b"the other run" and _listing(tmp_path) == ["labels.npy"]

    def no_hard_links(*args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported")

    dest.unlink()  # the same where the file system has no hard links (O_EXCL claims the name)
    monkeypatch.setattr(os, "link", no_hard_links)
    with pytest.raises(FileExistsError):
        atomic_write(dest, write_racing)
    assert dest.read_bytes() == b"the other run" and _listing(tmp_path) == ["labels.npy"]
    write_array(tmp_path / "new.npy", np.arange(4))
    np.testing.assert_array_equal(np.load(tmp_path / "new.npy"), np.arange(4))
    assert _listing(tmp_path) == ["labels.npy", "new.npy"]


# 6 ---------------------------------------------------------------------------------------------
def _dense_reference(pred, gt, thresholds):
    """The former dense implementation: full IoU matrix + Hungarian, and dense Rand error."""
    from scipy.optimize import linear_sum_assignment

    g_ids, g = np.unique(np.concatenate([[0], gt.ravel()]), return_inverse=True)
    p_ids, p = np.unique(np.concatenate([[0], pred.ravel()]), return_inverse=True)
    c = np.bincount(g[1:] * len(p_ids) + p[1:], minlength=len(g_ids) * len(p_ids))
    c = c.reshape(len(g_ids), len(p_ids)).astype(np.float64)
    inter = c[1:, 1:]
    ious = inter / (c[1:].sum(1)[:, None] + c[:, 1:].sum(0)[None] - inter)
    out = {}
    for t in thresholds:
        n_g, n_p = ious.shape
        tp, s = 0, 0.0
        if n_g and n_p and (ious >= t).any():
            ok = ious >= t
            rows, cols = linear_sum_assignment(-ok.astype(float) - ious / (2.0 * min(n_g, n_p)))
            hit = ok[rows, cols]
            tp, s = int(hit.sum()), float(ious[rows, cols][hit].sum())
        out[t] = (tp, n_p - tp, n_g - tp, s)
    n = gt.size
    agree = _pairs(n) + 2 * _pairs(c).sum() - _pairs(c.sum(1)).sum() - _pairs(c.sum(0)).sum()
    return out, 1.0 - agree / _pairs(n)


def _pairs(n):
    return n * (n - 1) / 2.0


def test_evaluate_memory_grows_with_overlaps_not_objects_squared():
    from napari_unet.core import metrics

    thresholds = (0.0, 0.1, 0.3, 0.5, 0.75)
    for seed in range(60):
        rng = np.random.default_rng(seed)
        shape = tuple(int(s) for s in rng.integers(3, 20, size=2))
        gt = rng.integers(0, int(rng.integers(2, 10)), size=shape)
        pred = np.where(rng.random(shape) < 0.7, gt, rng.integers(0, 10, size=shape))
        expected, rand = _dense_reference(pred, gt, thresholds)
        for t in thresholds:
            got = metrics.matching(pred, gt, t)
            tp, fp, fn, s = expected[t]
            assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, fn)
            if tp:
                assert got["mean_matched_iou"] == pytest.approx(s / tp, abs=1e-12)
        assert metrics.rand_error(pred, gt) == pytest.approx(rand, abs=1e-12)

    # ~69,000 objects (8x8 squares on 2100x2100 px, prediction shifted by one pixel): a dense
    # table would ask for ~36 GiB. Run in a child capped at 3 GiB of address space, so that a
    # dense implementation fails there with MemoryError instead of exhausting this machine.
    script = textwrap.dedent(
        """
        import resource, time, tracemalloc
        import numpy as np
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        from napari_unet.cli import evaluate_pair
        grid = np.arange(1, 263 * 263 + 1).reshape(263, 263)
        gt = np.kron(grid, np.ones((8, 8), np.int64))[:2100, :2100]
        pred = np.roll(gt, (1, 1), axis=(0, 1))
        tracemalloc.start()
        start = time.perf_counter()
        row = evaluate_pair(pred, gt)
        print(tracemalloc.get_traced_memory()[1], time.perf_counter() - start, row["ap@0.50"])
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    peak, seconds, ap = (float(v) for v in done.stdout.split())
    assert peak < 2**30 and ap > 0.95, done.stdout
    assert seconds < 30, done.stdout


# 7 ---------------------------------------------------------------------------------------------
def test_oversized_inputs_and_options_are_refused_without_traceback(
    data, tmp_path, capsys, monkeypatch
):
    import tifffile

    huge = tmp_path / "in" / "huge.tif"  # 320 bytes whose header claims 100000 x 100000 float32
    huge.parent.mkdir()
    tifffile.imwrite(huge, np.zeros((8, 8), np.float32))
    with tifffile.TiffFile(huge, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(100000)
        tif.pages[0].tags["ImageLength"].overwrite(100000)
    args = ["train", str(huge), "--labels", str(data / "lab.tif"), "--out", str(tmp_path / "m.pt")]
    assert cli.main(args) == 4
    assert "(100000, 100000)" in _error(capsys)
    predict = ["predict", str(data / "model.pt"), str(huge.parent), "--out", str(tmp_path / "p")]
    assert cli.main(predict) == 4
    assert "(100000, 100000)" in _error(capsys) and _listing(tmp_path / "p") == []

    assert _train(data, tmp_path / "m.pt", "--patch-size", "100000") == 2
    assert "--patch-size" in capsys.readouterr().err
    assert _train(data, tmp_path / "m.pt", "--steps", "99999999999999999999") == 2
    assert "--steps" in capsys.readouterr().err
    assert _train(data, tmp_path / "m.pt", "--patch-size", "4096", "--batch-size", "64") == 2
    assert "GiB" in _error(capsys)

    def exhausted(args):
        raise MemoryError("Unable to allocate 37.3 GiB for an array")

    monkeypatch.setattr(cli.parser, "_cmd_train", exhausted)
    assert _train(data, tmp_path / "m.pt", "--steps", "1") == 5
    assert "out of memory" in _error(capsys)
    assert not (tmp_path / "m.pt").exists()


# 8 ---------------------------------------------------------------------------------------------
def test_threshold_outside_0_1_is_refused(data, tmp_path, capsys):
    from napari_unet.core.instances import label_instances

    image = str(data / "img.tif")
    for bad in ("2", "-1"):
        out = tmp_path / f"out{bad}"
        args = ["predict", str(data / "model.pt"), image, "--out", str(out), "--device", "cpu"]
        assert cli.main([*args, "--threshold", bad]) == 2
        assert "threshold" in capsys.readouterr().err
        assert _listing(out) == []
    prob = np.full((16, 16), 0.9)
    for bad in (2.0, -0.1, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            label_instances(prob, threshold=bad)
    assert label_instances(prob, threshold=0.0, min_size=1).max() == 1
    assert cli.probability_threshold("0.5") == 0.5  # the type of the predict parser's option
    for text in ("2", "-0.5", "0", "1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.probability_threshold(text)


# 9 ---------------------------------------------------------------------------------------------
def test_messages_say_what_is_wrong(data, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    args = ["predict", str(data / "model.pt"), str(data / "img.tif"), "--out", str(afile)]
    assert cli.main([*args, "--overwrite", "--device", "cpu"]) == 3
    message = _error(capsys)
    assert f"--out must be a folder, but {afile} is a file" in message
    assert "pass --overwrite" not in message and afile.read_bytes() == b"x"

    assert _train(data, tmp_path / "m.pt", "--steps", "1") == 0  # complete labels, read as painted
    warning = capsys.readouterr().err
    assert "warning" in warning and "pass --dense-labels" in warning
    from napari_unet.core.labels import looks_dense

    dense = read_image(data / "lab.tif")
    painted = np.where(dense > 0, dense + 1, 0)  # the same cells, background painted as a stroke
    painted[:, :6] = 1
    assert looks_dense(dense) and not looks_dense(painted)


# 10 --------------------------------------------------------------------------------------------
def test_written_files_follow_the_umask(data, tmp_path):
    previous = os.umask(0o022)
    try:
        write_array(tmp_path / "labels.tif", np.ones((4, 4), np.uint16))
        save_model(UNet(depth=1, base_channels=4), tmp_path / "model.pt")
        gt = tmp_path / "gt"
        write_array(gt / "labels.tif", np.ones((4, 4), np.uint16))
        score = tmp_path / "scores.json"
        assert cli.main(["evaluate", str(tmp_path), str(gt), "--json", str(score)]) == 0
        for name in ("labels.tif", "model.pt", "scores.json"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
        os.umask(0o077)
        write_array(tmp_path / "private.npy", np.ones(2))
        assert (tmp_path / "private.npy").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


# 11 --------------------------------------------------------------------------------------------
class _Bar:
    """A progress bar whose refresh after step ``at`` does what ``interrupt`` says."""

    def __init__(self, at, interrupt):
        self.at, self.interrupt, self.total, self.n = at, interrupt, None, 0

    def set_postfix(self, **kwargs):
        pass

    def refresh(self):
        if self.n == self.at:
            self.interrupt()

    def close(self):
        pass


def _raise_keyboard_interrupt():
    raise KeyboardInterrupt


def _press_ctrl_c():
    signal.raise_signal(signal.SIGINT)


def test_ctrl_c_in_train_saves_the_last_finished_step(data, tmp_path, capsys, monkeypatch):
    for at, interrupt in ((2, _press_ctrl_c), (1, _raise_keyboard_interrupt)):
        bar = _Bar(at, interrupt)
        monkeypatch.setattr(cli.train, "_bar", lambda *args, bar=bar, **kwargs: bar)
        out = tmp_path / f"m{at}.pt"
        assert _train(data, out, "--steps", "50", "--dense-labels") == 130
        message = _error(capsys)
        assert f"cancelled after {at} steps; saved the model so far to {out}" in message
        assert load_model(out).metadata["training"]["steps_completed"] == at
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
