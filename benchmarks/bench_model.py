"""Model speed on this CPU: reference 3x3 conv GFLOP/s, then U-Net training/inference.

Run: ``.venv/bin/python benchmarks/bench_model.py [--quick] [--threads 2]`` (about 3 minutes).

1. Reference: one big ``nn.Conv2d(64, 64, 3)`` forward on 1x64x256x256
   (FLOPs = 2*Cin*Cout*9*H*W), best of a few runs, contiguous and channels_last; it is
   re-measured right before every row because the 2 cores are shared (ratio "vs ref").
2. Paper network (depth 4, 64 channels, valid, 572x572, batch 1): inference and one training
   step (forward + backward + Adam step), FLOPs counted with ``FlopCounterMode``; achieved
   GFLOP/s and the ratio to the reference conv (goal >= 70%).
3. Candidates for ``DEFAULT_CONFIG``: training step on a batch of 4 patches (output 96x96,
   the training default) and
   inference of one ~512x512 tile, with their context (field of view).
4. The default network against its own convolutions, each run alone on the input it gets in
   the network (``--own`` runs only this): how far the whole is from the speed of its parts.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from napari_unet.core.device import place_for_training, release_to_cpu  # noqa: E402
from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402

PATCH_OUT = 96  # 4 training patches with a 96x96 output (training.DEFAULT_OUTPUT_PATCH)


CPU_TIMES: dict[float, float] = {}  # wall time of a best run -> its process CPU time


def best_time(fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
    """Best wall time of ``reps`` runs; its process CPU time is kept in CPU_TIMES."""
    for _ in range(warmup):
        fn()
    best, best_cpu = float("inf"), 0.0
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t, c = time.perf_counter() - t0, time.process_time() - c0
        if t < best:
            best, best_cpu = t, c
    CPU_TIMES[best] = best_cpu
    return best


def count_flops(model: UNet, shape: tuple[int, ...], train: bool) -> int:
    """FLOPs of a forward (+ backward) pass, counted on the meta device (no compute)."""
    meta = copy.deepcopy(model).to("meta").train(train)
    x = torch.zeros(shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        if train:
            meta(x).sum().backward()
        else:
            with torch.no_grad():
                meta(x)
    return counter.get_total_flops()


def reference_gflops(reps: int = 6) -> float:
    """Best-of GFLOP/s of the reference conv (channels_last, the faster layout here)."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 64, 256, 256).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        t = best_time(lambda: conv(x), reps)
    return 2 * 64 * 64 * 9 * 256 * 256 / t / 1e9


def reference_conv(reps: int) -> float:
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(1, 64, 256, 256)
    flops = 2 * 64 * 64 * 9 * 256 * 256
    best = 0.0
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            c, xx = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            t = best_time(lambda c=c, xx=xx: c(xx), reps)
            gf = flops / t / 1e9
            print(
                f"reference conv 64->64 3x3 on 256x256 ({fmt}): {t * 1e3:7.1f} ms {gf:6.1f} GFLOP/s"
            )
            best = max(best, gf)
    return best


def make_step(model: UNet, x: torch.Tensor) -> Callable[[], None]:
    """A training step as ``core.training`` runs it on the CPU (its memory layout, Adam)."""
    place_for_training(model, "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.randint(0, model.n_classes, (x.shape[0], *model.output_shape(x.shape[-2:])))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()

    return step


def measure(
    name: str, model: UNet, shape: tuple[int, ...], reps: int, rows: list, train: bool = True
) -> None:
    """Time a training step (optional) and inference; ratio vs a reference conv run just before."""
    x = torch.randn(shape)
    if train:
        model.train()
        step = make_step(model, x)
        flops = count_flops(model, shape, train=True)
        ref = reference_gflops()
        t = best_time(step, reps)
        rows.append((name, "train step", shape, t, flops / 1e9, flops / t / 1e9, ref))
        release_to_cpu(model)  # inference below in the default layout, as before
    model.eval()

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    flops = count_flops(model, shape, train=False)
    ref = reference_gflops()
    t = best_time(infer, reps)
    rows.append((name, "inference", shape, t, flops / 1e9, flops / t / 1e9, ref))


def train_layouts(reps: int, rows: list) -> None:
    """The default network's train step in the default layout and in the one
    ``core.training`` uses on the CPU (channels-last, finding M5)."""
    model = UNet(**DEFAULT_CONFIG)
    x = torch.randn(4, 1, *model.valid_input_shape((PATCH_OUT, PATCH_OUT)))
    flops = count_flops(model, x.shape, train=True)
    model.train()
    for label, layout in (("default layout", release_to_cpu),
                          ("as trained (channels-last)", None)):
        step = make_step(model, x)  # in the training layout
        if layout is not None:
            layout(model)
        ref = reference_gflops()
        t = best_time(step, reps + 2)
        rows.append((f"default: {label}", "train step", tuple(x.shape), t, flops / 1e9,
                     flops / t / 1e9, ref))


def inference_variants(reps: int, rows: list) -> None:
    """The default network's inference on one CPU tile: plain, BatchNorm folded (as
    ``core.tiling`` predicts), channels-last, both."""
    from napari_unet.core.model import fold_batchnorm

    model = UNet(**DEFAULT_CONFIG).eval()
    n = model._valid_len_at_most(512)
    x = torch.randn(1, 1, n, n)
    flops = count_flops(model, x.shape, train=False)
    for label, net, fmt in (
        ("plain", model, torch.contiguous_format),
        ("BN folded", fold_batchnorm(model), torch.contiguous_format),
        ("channels-last", model, torch.channels_last),
        ("BN folded + channels-last", fold_batchnorm(model), torch.channels_last),
    ):
        net = net.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)

        def infer(net=net, xi=xi) -> None:
            with torch.inference_mode():
                net(xi)

        ref = reference_gflops()
        t = best_time(infer, reps + 2)
        rows.append((f"default: {label}", "inference", tuple(x.shape), t, flops / 1e9,
                     flops / t / 1e9, ref))


def layer_inputs(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[torch.nn.Module,
                                                                        torch.Tensor]]:
    """Every convolution of ``model`` with the input it gets in a forward pass of ``x``."""
    seen: list = []
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    hooks = [m.register_forward_hook(lambda m, inp, out: seen.append((m, inp[0].detach())))
             for m in model.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def layers_alone(model: torch.nn.Module, x: torch.Tensor, reps: int, train: bool) -> float:
    """Sum of the best times of the network's convolutions, each run alone on its own input
    (inference: forward; train: forward + backward), the network's speed of its parts."""
    total = 0.0
    for module, inp in layer_inputs(model, x):
        layer = copy.deepcopy(module)
        if train:
            inp = inp.clone().requires_grad_(True)

            def run(layer=layer, inp=inp) -> None:
                layer(inp).sum().backward()
        else:
            def run(layer=layer, inp=inp) -> None:
                with torch.inference_mode():
                    layer(inp)
        total += best_time(run, reps + 2)
    return total


def own_layers(reps: int) -> list[tuple[str, float, float]]:
    """The default network against its own convolutions run alone (train step and one tile,
    inference as ``core.tiling`` runs it: BatchNorm folded, channels-last)."""
    from napari_unet.core.model import fold_batchnorm

    model = UNet(**DEFAULT_CONFIG)
    patch = model.valid_input_shape((PATCH_OUT, PATCH_OUT))
    x = torch.randn(4, 1, *patch)
    model.train()
    step = make_step(model, x)
    whole = best_time(step, reps + 2)
    parts = layers_alone(model, x, reps, train=True)
    rows = [("train step (4 patches)", whole, parts)]
    net = fold_batchnorm(model.eval()).to(memory_format=torch.channels_last)
    n = model._valid_len_at_most(512)
    xi = torch.randn(1, 1, n, n).contiguous(memory_format=torch.channels_last)

    def infer() -> None:
        with torch.inference_mode():
            net(xi)

    rows.append((f"inference ({n}x{n} tile)", best_time(infer, reps + 2),
                 layers_alone(net, xi, reps, train=False)))
    return rows


def compiled(reps: int) -> list[tuple[str, float, float, float]]:
    """``torch.compile`` (inductor) against eager: ``(task, eager s, compiled s, compile s)``
    for one inference tile (BatchNorm folded, channels-last) and one train step."""
    from napari_unet.core.model import fold_batchnorm

    model = UNet(**DEFAULT_CONFIG)
    n = model._valid_len_at_most(512)
    net = fold_batchnorm(model.eval()).to(memory_format=torch.channels_last)
    xi = torch.randn(1, 1, n, n).contiguous(memory_format=torch.channels_last)

    def infer(m: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                m(xi)
        return run

    eager = best_time(infer(net), reps + 4)
    t0 = time.perf_counter()
    fast = infer(torch.compile(net))
    fast()
    first = time.perf_counter() - t0
    rows = [(f"inference ({n}x{n} tile)", eager, best_time(fast, reps + 4), first)]
    model.train()
    x = torch.randn(4, 1, *model.valid_input_shape((PATCH_OUT, PATCH_OUT)))
    eager = best_time(make_step(model, x), reps + 4)
    t0 = time.perf_counter()
    step = make_step(torch.compile(model), x)
    step()
    first = time.perf_counter() - t0
    rows.append(("train step (4 patches)", eager, best_time(step, reps + 4), first))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no paper net")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 is far faster on a loaded box)"
    )
    parser.add_argument("--own", action="store_true",
                        help="only the default network against its own layers run alone")
    parser.add_argument("--compile", action="store_true",
                        help="only torch.compile against eager (needs a C++ compiler)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    reps = 1 if args.quick else 2
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if args.compile:
        for task, eager, fast, first in compiled(reps):
            print(f"  {task:28s} eager {eager:7.3f} s  compiled {fast:7.3f} s  "
                  f"speed-up {eager / fast:4.2f}  compiling {first:5.0f} s")
        print(f"load average now {os.getloadavg()[0]:.1f}")
        return
    reference_conv(3)
    print("\nthe default network against its own convolutions run alone (goal: within 1.3x)")
    for task, whole, parts in own_layers(reps):
        print(f"  {task:28s} network {whole:7.3f} s  its convolutions alone {parts:7.3f} s  "
              f"ratio {whole / parts:4.2f}")
    if args.own:
        return
    rows: list = []
    train_layouts(reps, rows)
    inference_variants(reps, rows)
    if not args.quick:
        # the paper network is slow here: warm-up doubles as the single timed run's cache fill
        measure("paper d4 b64 valid", UNet(), (1, 1, 572, 572), 1, rows)
    candidates = [
        dict(depth=3, base_channels=16),
        dict(depth=3, base_channels=32),
        dict(depth=4, base_channels=16),
        dict(depth=2, base_channels=32),
    ]
    for cand in candidates:
        cfg = dict(DEFAULT_CONFIG, **cand)
        model = UNet(**cfg)
        name = f"d{cfg['depth']} b{cfg['base_channels']} {cfg['norm']} ctx{model.context}"
        if cfg == DEFAULT_CONFIG:
            name += " (DEFAULT)"
        patch = model.valid_input_shape((PATCH_OUT, PATCH_OUT))
        measure(name, model, (4, 1, *patch), reps, rows, train=True)
        n = model._valid_len_at_most(512)  # one CPU default tile
        measure(name, model, (1, 1, n, n), reps, rows, train=False)

    print()
    print(
        f"{'network':30s} {'task':10s} {'input':18s} {'time s':>7s} {'GFLOP':>7s} "
        f"{'GFLOP/s':>8s} {'ref':>6s} {'vs ref':>6s} {'CPU s':>7s}"
    )
    for name, kind, shape, t, gfl, gfs, ref in rows:
        print(
            f"{name:30s} {kind:10s} {str(shape):18s} {t:7.3f} {gfl:7.1f} {gfs:8.1f} "
            f"{ref:6.1f} {gfs / ref * 100:5.0f}% {CPU_TIMES.get(t, float('nan')):7.3f}"
        )
    print(
        f"\nref = channels_last reference conv GFLOP/s measured just before each row "
        f"(the machine is shared); CPU s = process CPU time of the timed run (2 threads: "
        f"about 2x wall when the cores are free); load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
