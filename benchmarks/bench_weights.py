"""U-Net weight map speed: cropped per-cell distance transforms vs a per-cell full-image EDT.

Run: ``.venv/bin/python benchmarks/bench_weights.py [--quick]`` (about 1 minute; ``--quick`` skips
the 1000-cell reference, which alone takes ~30 s).

Layout: 512x512 image with 100 or 1000 random discs (touching and overlapping allowed).
Goals: fast map < 50 ms at 100 cells, and >= 10x faster than the reference at 100 and 1000 cells.
The reference (no cut-off) and the fast map agree up to the documented cut-off (1e-3 * w0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from napari_unet.core.weights import CUTOFF_EPS, class_balance_weights, weight_map  # noqa: E402

CPU_TIMES: dict = {}


def best_time(fn: Callable[[], object], reps: int) -> float:
    """Best wall time and (stored in CPU_TIMES) median process CPU time, after one warm-up.

    On a shared, loaded machine the CPU time of this process is the steadier figure.
    """
    fn()
    walls, cpus = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    CPU_TIMES[fn] = float(np.median(cpus))
    return min(walls)


def random_cells(n: int, shape=(512, 512), seed: int = 0) -> np.ndarray:
    """n random discs, radius scaled so that they cover roughly a third of the image."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int32)
    r_max = max(3, int(np.sqrt(shape[0] * shape[1] / n) / 3.5))
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    for i in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(r_max // 2 + 1, r_max + 1)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i + 1
    return labels


def weight_map_reference(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Straightforward: one full-image distance transform per cell, then sort."""
    ids = [i for i in np.unique(labels) if i > 0]
    fg = labels > 0
    w_bg, w_fg = class_balance_weights(labels)
    w = np.where(fg, w_fg, w_bg)
    if len(ids) >= 2:
        d = np.stack([ndi.distance_transform_edt(labels != i) for i in ids])
        d.sort(axis=0)
        w = w + np.where(fg, 0.0, w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2)))
    return w.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1000-cell reference")
    args = parser.parse_args()

    print("weight_map 512x512, w0=10, sigma=5 (best of runs)")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("wall ms (best), CPU ms (median; steadier on a loaded machine)")
    header = ("cells", "fast", "fast CPU", "reference", "ref CPU", "speedup", "CPU x", "max|diff|")
    print(("{:>6} {:>8} {:>9} {:>10} {:>9} {:>8} {:>7} {:>10}").format(*header))
    for n in (100, 1000):
        labels = random_cells(n)
        n_cells = len(np.unique(labels)) - 1
        fast = lambda lab=labels: weight_map(lab)  # noqa: E731
        t_fast = best_time(fast, reps=7)
        c_fast = CPU_TIMES[fast]
        if args.quick and n > 100:
            print(f"{n_cells:>6} {t_fast * 1e3:>8.1f} {c_fast * 1e3:>9.1f} {'(skipped)':>10}")
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        ref = weight_map_reference(labels)
        t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
        diff = float(np.abs(weight_map(labels) - ref).max())
        print(
            f"{n_cells:>6} {t_fast * 1e3:>8.1f} {c_fast * 1e3:>9.1f} {t_ref * 1e3:>10.0f} "
            f"{c_ref * 1e3:>9.0f} {t_ref / t_fast:>7.0f}x {c_ref / c_fast:>6.0f}x {diff:>10.2e}"
        )
    print(
        f"(differences are bounded by the cut-off: border term < {CUTOFF_EPS:g} * w0 = "
        f"{CUTOFF_EPS * 10:g} is dropped)"
    )


if __name__ == "__main__":
    main()
