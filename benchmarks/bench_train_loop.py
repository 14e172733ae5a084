"""The real training loop (``core.training.train``): seconds per step, patches drawn in the loop
or prefetched in a background thread (``TrainConfig.prefetch``), alternated in one run.

    python benchmarks/bench_train_loop.py                       # fluo + he dense-3, 150 steps
    python benchmarks/bench_train_loop.py --kinds fluo --steps 60 --rounds 1

Run it on a quiet machine: it prints the load average with every figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import kinds as K  # noqa: E402

from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.training import train_to_completion  # noqa: E402


def seconds_per_step(kind: K.Kind, images: list, labels: list, steps: int, prefetch: bool) -> float:
    """Wall seconds per step of ``steps`` steps of a new default network (seed 0)."""
    model = UNet(**{**DEFAULT_CONFIG, "in_channels": 3 if kind.rgb else 1})
    t0 = time.perf_counter()
    train_to_completion(model, images, labels, steps=steps, dense=True, seed=0, device="cpu",
                        channel_axis=-1 if kind.rgb else None, prefetch=prefetch)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    """Alternate the two loops ``--rounds`` times per kind and print each figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", default=["fluo", "he"], choices=sorted(K.KINDS))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=K.DATA)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps, dense-3")
    for name in args.kinds:
        kind = K.KINDS[name]
        images, labels, _ = K.annotation("dense-3", K.load(kind, "train", args.data, None), 0,
                                         kind)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for prefetch in (False, True):
                s = seconds_per_step(kind, images, labels, args.steps, prefetch)
                times[prefetch].append(s)
                load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
                print(f"{name:6s} prefetch={prefetch!s:5s} {s:.3f} s/step  (load {load})",
                      flush=True)
        before, after = min(times[False]), min(times[True])
        print(f"{name:6s} best: in the loop {before:.3f} s/step, prefetched {after:.3f} s/step, "
              f"{before / after:.2f}x")


if __name__ == "__main__":
    main()
