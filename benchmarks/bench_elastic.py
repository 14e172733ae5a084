"""Elastic deformation speed: ``elastic_deform`` vs the ``elasticdeform`` package.

Run: ``.venv/bin/python benchmarks/bench_elastic.py`` (a few seconds). ``elasticdeform`` is a
dev-only dependency; install it with
``.venv/bin/pip install --no-binary elasticdeform elasticdeform`` (its wheel is built for NumPy 1).

Task: 512x512 float32 image (cubic) + int32 labels (nearest), 3x3 control grid, sigma 10 px,
mirror boundary, the same displacement for both libraries (their outputs are compared too).
Goal: ours as fast or faster.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from napari_unet.core.augment import elastic_deform  # noqa: E402

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


def main() -> None:
    rng = np.random.default_rng(0)
    image = ndi.gaussian_filter(rng.random((512, 512)), 3).astype(np.float32)
    labels = rng.integers(0, 100, (512, 512)).astype(np.int32)
    reps = 15

    def ours():
        return elastic_deform(image, labels, grid=3, sigma=10.0, seed=1, mode="mirror")

    t_ours = best_time(ours, reps)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        "elastic deformation, 512x512 float32 image (order 3) + int32 labels (order 0), "
        "3x3 grid, sigma 10, best of runs"
    )
    print(
        f"  napari_unet.elastic_deform : {t_ours * 1e3:7.1f} ms "
        f"(CPU {CPU_TIMES[ours] * 1e3:.1f} ms)"
    )
    try:
        import elasticdeform
    except ImportError:
        print(
            "  elasticdeform              : not installed -- install it with "
            "`.venv/bin/pip install --no-binary elasticdeform elasticdeform` to compare"
        )
        return

    control = np.random.default_rng(1).standard_normal((2, 3, 3)) * 10.0

    def theirs():
        return elasticdeform.deform_grid([image, labels], control, order=[3, 0], mode="mirror")

    t_theirs = best_time(theirs, reps)
    print(
        f"  elasticdeform.deform_grid  : {t_theirs * 1e3:7.1f} ms "
        f"(CPU {CPU_TIMES[theirs] * 1e3:.1f} ms)"
    )
    print(
        f"  speedup                    : {t_theirs / t_ours:7.2f}x "
        f"(CPU {CPU_TIMES[theirs] / CPU_TIMES[ours]:.2f}x)"
    )
    a_img, a_lab = ours()
    b_img, b_lab = theirs()
    print(
        f"  same field: max |image diff| {np.abs(a_img - b_img).max():.1e}, "
        f"labels differing {np.mean(a_lab != b_lab):.1e}"
    )


if __name__ == "__main__":
    main()
