"""Scale-out throughput: a folder of images and one large zarr image, local vs LocalCluster.

    python benchmarks/bench_scaleout.py                       # 16 x 512^2 files, 8192^2 zarr
    python benchmarks/bench_scaleout.py --large 2048 --n-files 8   # quicker
    python benchmarks/bench_scaleout.py --folder-only --n-files 20 --size 1024 --model nuclei
    python benchmarks/bench_scaleout.py --against a1f2db3 --n-files 20 --size 1024
    python benchmarks/bench_scaleout.py --against a1f2db3 --predict-args="--diameter auto"

``--against REV`` times ``napari-unet predict`` on a folder (the command a user runs, start-up
included) as it was at git revision REV and as it is now, alternately, on the same files with
the shipped nuclei model, and checks that both wrote the same labels.

Prints images/s for the folder, and Mpx/s + peak memory for the zarr image, for a single process
(no dask) and for a ``LocalCluster(n_workers=2, threads_per_worker=1)``. Peak memory: numpy
allocations traced by tracemalloc (single process) and the workers' max RSS (cluster).
The model is untrained (timing does not depend on the weights) with ``DEFAULT_CONFIG`` unless
``--depth/--width`` say otherwise.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from napari_unet.core import scaleout
from napari_unet.core.checkpoint import save_model
from napari_unet.core.io import write_array
from napari_unet.core.model import DEFAULT_CONFIG, UNet
from napari_unet.core.synthetic import make_cells


def _worker_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _large_zarr(path: Path, size: int) -> None:
    import zarr

    arr = zarr.open_array(
        store=str(path), mode="w", shape=(size, size), chunks=(512, 512), dtype=np.float32
    )
    tile, _ = make_cells((1024, 1024), 250, seed=0)
    for y in range(0, size, 1024):
        for x in range(0, size, 1024):
            arr[y : y + 1024, x : x + 1024] = tile[: min(1024, size - y), : min(1024, size - x)]


def _write_folder(root: Path, args: argparse.Namespace) -> list[Path]:
    """Synthetic images of cells, one file each, for the folder runs."""
    for i in range(args.n_files):
        img = make_cells((args.size,) * 2, max(30, args.size**2 // 4000), i)[0]
        write_array(root / "in" / f"img{i:02d}.tif", img)
    return sorted((root / "in").iterdir())


def _cli_seconds(src: Path, model: Path, inputs: Path, out: Path, extra: list[str]) -> float:
    """Wall seconds of ``napari-unet predict`` run from the package sources in ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "napari_unet.cli", "predict", str(model), str(inputs),
           "--out", str(out), *extra]
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def against(args: argparse.Namespace) -> None:
    """images/s of ``napari-unet predict`` at git revision ``args.against`` and now, alternately."""
    import filecmp

    from napari_unet.models import pretrained_path

    repo = Path(__file__).resolve().parents[1]
    root = Path(tempfile.mkdtemp(prefix="bench_against_"))
    old = root / "old"
    try:
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(old),
                        args.against], check=True, capture_output=True)
        files = _write_folder(root, args)
        model = pretrained_path("nuclei")
        extra = shlex.split(args.predict_args)
        print(f"{len(files)} x {args.size}^2 files, shipped nuclei model, torch threads 2; "
              f"napari-unet predict {' '.join(extra)} at {args.against} vs now, load average "
              f"{os.getloadavg()[0]:.2f}")
        for n, (label, src) in enumerate([("then", old), ("now", repo)] * 2):
            dt = _cli_seconds(src / "src", model, root / "in", root / f"out{n}", extra)
            print(f"  {label:4s}: {len(files) / dt:.3f} images/s ({dt:.1f} s), "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
        same = all(filecmp.cmp(root / "out0" / f.name, root / "out1" / f.name, shallow=False)
                   for f in files)
        print(f"  same labels then and now: {same}")
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(old)],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def folder_only(model: UNet, args: argparse.Namespace) -> None:
    """images/s of a folder, sequential then pipelined then sequential (same run)."""
    root = Path(tempfile.mkdtemp(prefix="bench_folder_"))
    try:
        files = _write_folder(root, args)
        print(f"{args.n_files} x {args.size}^2 files, model {args.model or 'untrained'}, "
              f"torch threads 2, load average {os.getloadavg()[0]:.2f}")
        for n, pipeline in enumerate((False, True, False, True)):
            t = time.perf_counter()
            scaleout.predict_files(model, files, root / f"out{n}", device="cpu",
                                   pipeline=pipeline)
            dt = time.perf_counter() - t
            print(f"  {'pipelined ' if pipeline else 'sequential'}: "
                  f"{args.n_files / dt:.3f} images/s ({dt:.1f} s), "
                  f"load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-files", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--large", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=DEFAULT_CONFIG["depth"])
    parser.add_argument("--width", type=int, default=DEFAULT_CONFIG["base_channels"])
    parser.add_argument("--processes", action="store_true", help="cluster workers as processes")
    parser.add_argument("--folder-only", action="store_true",
                        help="only the folder, one file after the other vs pipelined (the "
                        "labelling of a file beside the network on the next)")
    parser.add_argument("--model", help="a shipped starting model's name instead of an "
                        "untrained network (its object scale and threshold apply)")
    parser.add_argument("--against", metavar="REV",
                        help="only the folder: napari-unet predict at git revision REV vs now")
    parser.add_argument("--predict-args", default="", metavar="'FLAGS'",
                        help="with --against: flags for both predict runs, e.g. '--diameter 15'")
    args = parser.parse_args()
    if args.against:
        against(args)
        return
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if args.model:
        from napari_unet.models import load_pretrained

        model = load_pretrained(args.model)
    else:
        model = UNet(**dict(DEFAULT_CONFIG, depth=args.depth, base_channels=args.width)).eval()
    if args.folder_only:
        folder_only(model, args)
        return
    root = Path(tempfile.mkdtemp(prefix="bench_scaleout_"))
    try:
        ckpt = save_model(model, root / "model.pt")
        for i in range(args.n_files):
            write_array(root / "in" / f"img{i:02d}.tif", make_cells((args.size,) * 2, 30, i)[0])
        files = sorted((root / "in").iterdir())
        _large_zarr(root / "large.zarr", args.large)
        print(
            f"model depth={args.depth} width={args.width}; {args.n_files} x {args.size}^2 "
            f"files; zarr {args.large}^2 (chunk {args.chunk}); torch threads 2"
        )

        def run(label: str, client) -> None:
            t = time.perf_counter()
            scaleout.predict_files(ckpt, files, root / f"out_{label}", client=client, device="cpu")
            dt = time.perf_counter() - t
            print(f"[{label}] folder: {args.n_files / dt:.2f} images/s ({dt:.1f} s)")
            if client is None:
                tracemalloc.start()
            t = time.perf_counter()
            info = scaleout.predict_zarr(
                model,
                root / "large.zarr",
                root / f"large_{label}.zarr",
                chunk=args.chunk,
                client=client,
                device="cpu",
            )
            dt = time.perf_counter() - t
            if client is None:
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                mem = f"peak traced {peak:.0f} MB, process max RSS {_worker_rss_mb():.0f} MB"
            else:
                rss = client.run(_worker_rss_mb)
                mem = "worker max RSS " + ", ".join(f"{v:.0f}" for v in rss.values()) + " MB"
            mpx = args.large**2 / 1e6
            print(
                f"[{label}] zarr: {mpx / dt:.2f} Mpx/s ({dt:.1f} s, {info['n_chunks']} chunks, "
                f"{info['n_objects']} objects); {mem}; image float32 "
                f"{args.large**2 * 4 / 2**20:.0f} MB"
            )

        run("local", None)
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=args.processes, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            if args.processes:
                client.run(torch.set_num_threads, 1)
            run("cluster", client)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
