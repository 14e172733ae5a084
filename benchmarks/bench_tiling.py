"""Tiled prediction of a 4096x4096 image with the default network on the CPU (2 threads).

Run: ``.venv/bin/python benchmarks/bench_tiling.py [--size 4096] [--tile 512] [--threads 2]``
(~1 minute on a free 2-core CPU; ~5 minutes with 2 threads when the cores are oversubscribed).

Prints: output pixels/s of ``predict_tiled``; the time of bare forward passes over the same
number of tiles (measured on a few batches, extrapolated) and the overhead of tiling
(reading, mirroring, normalizing, softmax, copying out; goal <= 10%), both against that
extrapolation and, robust to load changes, against the time spent inside the network's
forward during the same run (forward hooks); peak memory (VmHWM delta,
reset through /proc/self/clear_refs) against the bound input + output + one batch in flight;
and, for the choice of ``DEFAULT_TILE_SIZE``, the useful output pixels/s of one batch at
several tile sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.tiling import predict_tiled, tile_shape  # noqa: E402

MB = 1 << 20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def bare_forward(model: UNet, shape: tuple[int, int], batch: int, reps: int) -> float:
    """Seconds per tile of the network alone (inference mode), best of ``reps`` batches."""
    x = torch.randn(batch, model.in_channels, *shape)
    best = float("inf")
    with torch.inference_mode():
        model(x)
        for _ in range(reps):
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
    return best / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--tile", type=int, default=None, help="tile size (default: per device)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 is far faster on a loaded box)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}, network {DEFAULT_CONFIG}"
    )
    model = UNet(**DEFAULT_CONFIG).eval()
    n = args.size
    shape = tile_shape(model, (n, n), args.tile, "cpu")
    out_tile = model.output_shape(shape)

    # 1. one batch of bare forward passes: warm-up and the activation memory of one batch
    rss0 = _status_kb("VmRSS")
    have_reset = reset_peak()
    t_tile = bare_forward(model, shape, args.batch, reps=2)
    batch_kb = _status_kb("VmHWM") - rss0

    rng = np.random.default_rng(0)
    image = (rng.random((n, n), dtype=np.float32) * 4000).astype(np.uint16)
    input_mb = image.nbytes / MB
    output_mb = model.n_classes * n * n * 4 / MB

    # 2. tiled prediction, peak memory
    rss1 = _status_kb("VmRSS")
    reset_peak()
    calls: list[tuple[int, int]] = []
    in_model = [0.0, 0.0]  # [start of the current forward, total seconds inside forward]

    def pre_hook(module: torch.nn.Module, inputs: object) -> None:
        in_model[0] = time.perf_counter()

    def post_hook(module: torch.nn.Module, inputs: object, output: object) -> None:
        in_model[1] += time.perf_counter() - in_model[0]

    hooks = [model.register_forward_pre_hook(pre_hook), model.register_forward_hook(post_hook)]
    t0 = time.perf_counter()
    probs = predict_tiled(
        model,
        image,
        tile_size=args.tile,
        batch_size=args.batch,
        device="cpu",
        progress=lambda d, t: calls.append((d, t)),
    )
    t_pred = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    peak_mb = (_status_kb("VmHWM") - rss1) / 1024
    n_tiles = calls[-1][1]
    assert probs.shape == (model.n_classes, n, n)
    del probs

    # 3. bare forward time over the same tiles (re-measured after, keep the best estimate)
    t_tile = min(t_tile, bare_forward(model, shape, args.batch, reps=2))
    t_bare = t_tile * n_tiles
    overhead = t_pred / t_bare - 1

    print(
        f"\nimage {n}x{n} uint16, tiles {shape} -> output {out_tile}, {n_tiles} tiles, "
        f"batch {args.batch}"
    )
    print(f"predict_tiled            {t_pred:8.1f} s   {n * n / t_pred / 1e6:6.3f} Mpx/s")
    print(f"bare forward, same tiles {t_bare:8.1f} s   ({t_tile:.3f} s per tile)")
    print(f"overhead vs bare forward {overhead * 100:8.1f} %   (separate runs: load noise)")
    inside = in_model[1]
    print(
        f"time inside the network  {inside:8.1f} s   -> tiling overhead in the same run "
        f"{(t_pred - inside) / inside * 100:.1f} % (goal <= 10 %)"
    )
    if have_reset:
        bound = input_mb + output_mb + batch_kb / 1024
        print(
            f"peak memory (VmHWM delta) {peak_mb:7.0f} MB; bound input {input_mb:.0f} + output "
            f"{output_mb:.0f} + one batch {batch_kb / 1024:.0f} = {bound:.0f} MB "
            f"(input was allocated before: delta excludes it)"
        )
    else:
        print("peak memory: /proc/self/clear_refs not writable here, skipped")

    # 4. tile size sweep: useful output pixels per second of one batch (tiling efficiency)
    print("\ntile  output  useful px/s (1 batch)")
    for t in (256, 384, 512, 768, 1024):
        s = model._valid_len_at_most(t)
        o = model._out_len(s)
        step = o // model.shape_multiple * model.shape_multiple
        per_tile = bare_forward(model, (s, s), args.batch if t <= 768 else 1, reps=1)
        print(f"{s:5d} {o:6d}  {step * step / per_tile / 1e6:6.3f} Mpx/s")
    print(f"\nload average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
