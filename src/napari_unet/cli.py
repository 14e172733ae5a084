"""Headless command line: ``napari-unet train | predict | export | evaluate``.

Exit codes: 0 ok; 2 usage (argparse); 3 missing input file, an output that exists without
``--overwrite``, or an output that cannot be written (checked before any work); 4 unreadable
image (also one larger than the memory) or corrupt/foreign model checkpoint; 5 bad data (shape
mismatch, bad labels, image incompatible with the model, a diverged training, out of memory,
...); 130 cancelled (Ctrl-C; ``train`` then saves the model of the last finished step).
Errors print one line ``napari-unet: error: ...`` on stderr, never a traceback, and outputs are
written atomically, so a failed or cancelled run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core.instances import DEFAULT_MIN_SIZE
from .core.io import IMAGE_SUFFIXES
from .core.segment import CONVERSIONS

PROG = "napari-unet"
EXIT_OK, EXIT_USAGE, EXIT_FILE, EXIT_UNREADABLE, EXIT_DATA, EXIT_CANCELLED = 0, 2, 3, 4, 5, 130


class CliError(Exception):
    """An error with its exit code and one-line message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- helpers
def _read(path: str | Path, what: str = "image") -> np.ndarray:
    """Read a whole image; missing -> exit 3, unreadable -> exit 4."""
    from .core.io import read_image

    path = Path(path)
    if not path.exists():
        raise CliError(EXIT_FILE, f"{what} not found: {path}")
    try:
        return np.asarray(read_image(path))
    except ValueError as error:  # also ImageTooLarge: the header promises more than the memory
        raise CliError(EXIT_UNREADABLE, str(error)) from None
    except OSError as error:
        raise CliError(EXIT_UNREADABLE, f"cannot read {what} {path}: {error}") from None
    except MemoryError:
        raise CliError(EXIT_UNREADABLE, f"not enough memory to read {what} {path}") from None


def _model_path(name_or_path: str | Path) -> Path:
    """A checkpoint path, or the file of a shipped starting model given by name ("nuclei")."""
    from .models import ALIASES, PRETRAINED, pretrained_path

    name = str(name_or_path)
    if (name in PRETRAINED or name in ALIASES) and not Path(name_or_path).exists():
        return pretrained_path(name)
    return Path(name_or_path)


def _starting_help() -> str:
    """The short names of the shipped starting models, for ``--help``."""
    from .models import starting_models

    return ", ".join(f"'{name}' ({text.split(' (')[0]})" for name, text in
                     starting_models(installed=False).items())


def _load_model(path: str | Path) -> Any:
    """A checkpoint, a shipped model's name or a bioimage.io package (.zip) exported by us."""
    from .core.bioimageio import load_any

    path = _model_path(path)
    if not path.exists():
        raise CliError(EXIT_FILE, f"model not found: {path}")
    return load_any(path)  # CheckpointError -> exit 4 in main()


def _expand_inputs(items: Sequence[str]) -> list[Path]:
    """Files as given; folders expand to their image files (and .zarr stores), sorted."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if not path.exists():
            raise CliError(EXIT_FILE, f"input not found: {path}")
        if path.is_dir() and path.suffix.lower() != ".zarr":
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise CliError(EXIT_FILE, f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
            out.extend(found)
        else:
            out.append(path)
    return out


def _bar(total: int | None, desc: str, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None
    )


def _progress(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update


# ----------------------------------------------------------------------------- train
def _check_out_file(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` file that cannot be written, before any data is read or trained on."""
    if out.is_dir():
        raise CliError(EXIT_FILE, f"--out {out} is a folder; give a file name such as model.pt")
    if out.exists() and not overwrite:
        raise CliError(EXIT_FILE, f"{out} already exists; pass --overwrite to replace it")
    folder = out.parent
    if not folder.is_dir():
        raise CliError(EXIT_FILE, f"cannot write --out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(
            EXIT_FILE, f"cannot write --out {out}: folder {folder} is read-only for this user"
        )


def _save(model: Any, out: Path, overwrite: bool) -> None:
    """Save the model atomically; any failure (full disk, ...) is one line naming ``out``."""
    from .core.checkpoint import save_model

    try:
        save_model(model, out, overwrite=overwrite)
    except FileExistsError:
        raise CliError(EXIT_FILE, f"{out} already exists; pass --overwrite to replace it") from None
    except OSError as error:
        raise CliError(EXIT_FILE, f"cannot write {out}: {error.strerror or error}") from None


def _warn_if_dense(paths: Sequence[str], labels: Sequence[np.ndarray]) -> None:
    """Warn when labels read as painted (1 = background) look like complete labels."""
    from .core.labels import looks_dense

    for path, lab in zip(paths, labels, strict=True):
        if looks_dense(lab):
            print(
                f"{PROG}: warning: {path} looks like complete labels (0 = background, label 1 "
                "one cell like the others), but without --dense-labels 1 is painted background "
                "and 0 unlabeled; pass --dense-labels if 0 is background",
                file=sys.stderr,
            )


# Bytes per pixel of the network input side, per sample and first-level channel, that a
# training step keeps for the backward pass (about 24 feature maps of float32 per level-0
# channel, summed over the levels): an estimate to refuse patches that cannot fit in memory.
_TRAIN_BYTES_PER_PX_CHANNEL = 24 * 4


def _check_patch_memory(model: Any, patch: int, batch: int, device: str) -> None:
    """Refuse (usage error) a ``--patch-size`` whose training step needs more than the RAM."""
    from .core.device import resolve_device
    from .core.io import available_memory

    have = available_memory()
    if have is None or resolve_device(device).type != "cpu":
        return
    side = max(model.valid_input_shape((patch, patch)))
    need = batch * side**2 * int(model.base_channels) * _TRAIN_BYTES_PER_PX_CHANNEL
    if need > have:
        raise CliError(
            EXIT_USAGE,
            f"--patch-size {patch} with --batch-size {batch} needs about {need / 2**30:.1f} GiB "
            f"per training step, more than the {have / 2**30:.1f} GiB available; "
            "use a smaller --patch-size or --batch-size",
        )


class _StopOnCtrlC:
    """While training: the first Ctrl-C stops after the current step, a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():  # signals go to main only
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"{PROG}: stopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self._installed:  # None: the previous handler was not set from Python
            signal.signal(signal.SIGINT, self._previous or signal.SIG_DFL)


def _run_steps(steps: Any, bar: Any) -> tuple[int, bool]:
    """Drive the training generator: ``(finished steps, stopped by Ctrl-C between steps)``.

    A KeyboardInterrupt raised inside a step (a second Ctrl-C) propagates: that step is half
    done, so nothing is saved.
    """
    done, stopped = 0, False
    with _StopOnCtrlC() as stop:
        try:
            for p in steps:
                done = p.step
                try:
                    bar.total = p.total_steps
                    bar.n = p.step
                    bar.set_postfix(loss=f"{p.loss:.4f}", refresh=False)
                    bar.refresh()
                except KeyboardInterrupt:  # between steps: the model is the finished step
                    stop.requested = True
                if stop.requested:
                    stopped = True
                    break
        finally:
            steps.close()
            bar.close()
    return done, stopped


def _check_pairs(args: argparse.Namespace) -> None:
    """Labels pair with images by order: the same number of each."""
    if len(args.labels) != len(args.images):
        raise CliError(
            EXIT_USAGE,
            f"got {len(args.images)} image(s) but {len(args.labels)} label image(s); "
            "labels pair with images by order",
        )


def _base_model(args: argparse.Namespace, images: list[np.ndarray],
                channel_axis: int | None) -> Any:
    """The model to train: ``--from`` (a checkpoint or starting model), else a new U-Net."""
    from .core.model import DEFAULT_CONFIG, UNet
    from .core.training import FINE_TUNE_LEARNING_RATE

    if args.from_model:
        arch = [n for n in ("depth", "width", "padding", "border_class") if getattr(args, n)]
        if arch:
            flag = arch[0].replace("_", "-")
            raise CliError(EXIT_USAGE, f"--{flag} cannot change a model given with --from")
        if args.lr is None:
            args.lr = FINE_TUNE_LEARNING_RATE
        return _load_model(args.from_model)
    config = dict(DEFAULT_CONFIG)
    for name, key in (("depth", "depth"), ("width", "base_channels"), ("padding", "padding")):
        if getattr(args, name) is not None:
            config[key] = getattr(args, name)
    if channel_axis is not None:
        config["in_channels"] = int(images[0].shape[channel_axis])
    if args.border_class:
        config["n_classes"] = 3
    return UNet(**config)


# (argument, TrainConfig field) of the training options given only when set
_TRAIN_OPTIONS = (
    ("steps", "steps"),
    ("minutes", "minutes"),
    ("lr", "learning_rate"),
    ("batch_size", "batch_size"),
    ("patch_size", "patch_size"),
    ("w0", "w0"),
    ("sigma", "sigma"),
    ("diameter", "diameter"),
    ("conversion", "channel_conversion"),
)


def _train_config(args: argparse.Namespace) -> Any:
    """The :class:`~.core.training.TrainConfig` of the command line."""
    from .core.training import TrainConfig

    settings: dict[str, Any] = {
        "dense": args.dense_labels,
        "device": args.device,
        "seed": args.seed,
        "augment": not args.no_augment,
    }
    for name, key in _TRAIN_OPTIONS:
        if getattr(args, name) is not None:
            settings[key] = getattr(args, name)
    return TrainConfig(**settings)


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .core.training import TrainingDiverged, train

    _check_pairs(args)
    out = Path(args.out)
    _check_out_file(out, args.overwrite)
    images = [_read(p) for p in args.images]
    labels = [_read(p, "labels") for p in args.labels]
    if not args.dense_labels:
        _warn_if_dense(args.labels, labels)
    channel_axis = _channel_axis(args, images[0], labels[0])
    if args.seed is not None:
        torch.manual_seed(args.seed)
    model = _base_model(args, images, channel_axis)
    config = _train_config(args)
    if args.patch_size is not None:
        _check_patch_memory(model, args.patch_size, config.batch_size, args.device)
    steps = train(model, images, labels, config, channel_axis=channel_axis)
    bar = _bar(None if args.minutes else config.steps, "train", "step")
    try:
        done, stopped = _run_steps(steps, bar)
    except TrainingDiverged as error:  # nothing is saved: NaN weights are no model
        raise CliError(EXIT_DATA, f"{error} (--lr)") from None
    _save(model, out, args.overwrite)  # after Ctrl-C too: the last finished step is kept
    if stopped:
        raise CliError(
            EXIT_CANCELLED, f"cancelled after {done} steps; saved the model so far to {out}"
        )
    print(f"saved {out}", file=sys.stderr)
    return EXIT_OK


def _channel_axis(args: argparse.Namespace, image: np.ndarray, labels: Any = None) -> int | None:
    """``--channel-axis``, or -1 for an image that looks RGB(A), ``(Y, X, 3|4)``."""
    if args.channel_axis is not None:
        return int(args.channel_axis)
    from .core.segment import guess_channel_axis

    axis = guess_channel_axis(image.shape, None if labels is None else labels.shape)
    if axis is not None:
        print(
            f"{PROG}: reading the image of shape {image.shape} as colour (channels on axis "
            f"{axis}); pass --channel-axis to say otherwise",
            file=sys.stderr,
        )
    return axis


# ----------------------------------------------------------------------------- predict
def _connect(address: str | None) -> Any:
    if not address:
        return None
    try:
        from distributed import Client
    except ImportError:
        raise CliError(
            EXIT_USAGE, "--scheduler needs dask.distributed (pip install 'napari-unet[dask]')"
        ) from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as error:
        raise CliError(EXIT_FILE, f"cannot connect to scheduler {address}: {error}") from None


# the predict options passed to scaleout.predict_files under their own names
_PREDICT_OPTIONS = (
    "threshold", "min_size", "diameter", "conversion", "tile_size", "batch_size", "device",
    "channel_axis", "probabilities", "overwrite", "chunk",
)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .core.scale import default_diameter
    from .core.scaleout import predict_files

    paths = _expand_inputs(args.inputs)
    model = _load_model(args.model)
    if args.diameter is None:
        args.diameter = default_diameter(model)
    for p in paths:  # unreadable files fail before any output is written
        if p.suffix.lower() != ".zarr":
            continue
        _check_zarr(p)
    client = _connect(args.scheduler)
    bar = _bar(len(paths), "predict", "image")
    try:
        written = predict_files(
            model if client is None else str(_model_path(args.model)),
            paths,
            args.out,
            fmt=args.format,
            memory_budget_mb=args.memory_budget,
            client=client,
            progress=_progress(bar),
            **{name: getattr(args, name) for name in _PREDICT_OPTIONS},
        )
    except ValueError as error:
        message = str(error)
        if message.startswith("cannot read"):
            raise CliError(EXIT_UNREADABLE, message) from None
        raise
    finally:
        bar.close()
        if client is not None:
            client.close()
    for path in written:
        print(path)
    return EXIT_OK


def _check_zarr(path: Path) -> None:
    from .core.io import read_image

    try:
        read_image(path)
    except ValueError as error:
        raise CliError(EXIT_UNREADABLE, str(error)) from None


# ----------------------------------------------------------------------------- export
def _cmd_export(args: argparse.Namespace) -> int:
    """Write a bioimage.io model package (.zip) of a checkpoint, atomically."""
    from .core.bioimageio import export_package

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise CliError(EXIT_USAGE, f"--out {out}: a bioimage.io package is a .zip file")
    _check_out_file(out, args.overwrite)
    model = _load_model(args.model)
    sample = _read(args.sample, "sample image") if args.sample else None
    axis = args.channel_axis if sample is None else _channel_axis(args, sample)
    try:
        export_package(
            model, out, sample=sample, channel_axis=axis,
            conversion=args.conversion, name=args.name, authors=args.author,
            license=args.license, overwrite=args.overwrite,
        )
    except FileExistsError:
        raise CliError(EXIT_FILE, f"{out} already exists; pass --overwrite to replace it") from None
    except OSError as error:
        raise CliError(EXIT_FILE, f"cannot write {out}: {error.strerror or error}") from None
    print(f"saved {out}", file=sys.stderr)
    return EXIT_OK


# ----------------------------------------------------------------------------- evaluate
def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise CliError(EXIT_FILE, f"folder not found: {folder}")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in files:
                raise CliError(EXIT_DATA, f"two files named {p.stem!r} in {folder}")
            files[p.stem] = p
    return files


def evaluate_pair(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """All metrics of one predicted / ground-truth instance label pair."""
    from .core import metrics

    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
    ap = metrics.average_precision(pred, gt)
    row = {
        "iou": metrics.iou(pred, gt),
        "dice": metrics.dice(pred, gt),
        **{f"ap@{t:.2f}": v for t, v in ap.items()},
        "map": float(np.mean(list(ap.values()))),
        "mean_matched_iou": metrics.matching(pred, gt, 0.5)["mean_matched_iou"],
        "pixel_error": metrics.pixel_error(pred, gt),
        "rand_error": metrics.rand_error(pred, gt),
    }
    return {k: float(v) for k, v in row.items()}


_TABLE = (
    "iou",
    "dice",
    "ap@0.50",
    "ap@0.75",
    "ap@0.90",
    "map",
    "mean_matched_iou",
    "pixel_error",
    "rand_error",
)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.io import atomic_write

    preds, gts = _by_stem(Path(args.pred_dir)), _by_stem(Path(args.gt_dir))
    stems = sorted(set(preds) & set(gts))
    if not stems:
        raise CliError(
            EXIT_FILE, f"no file names (stems) in common between {args.pred_dir} and {args.gt_dir}"
        )
    for stem in sorted(set(preds) ^ set(gts)):
        side = args.pred_dir if stem in preds else args.gt_dir
        print(f"{PROG}: warning: {stem!r} only in {side}; skipped", file=sys.stderr)
    if args.json and Path(args.json).exists() and not args.overwrite:
        raise CliError(EXIT_FILE, f"{args.json} already exists; pass --overwrite to replace it")
    per_image: dict[str, dict[str, float]] = {}
    for stem in stems:
        try:
            per_image[stem] = evaluate_pair(_read(preds[stem]), _read(gts[stem], "labels"))
        except ValueError as error:
            raise ValueError(f"{stem}: {error}") from None
    mean = {k: float(np.mean([r[k] for r in per_image.values()])) for k in per_image[stems[0]]}
    width = max(8, *(len(s) for s in stems))
    print(f"{'image':<{width}} " + " ".join(f"{k:>9.9}" for k in _TABLE))
    for stem, row in [*per_image.items(), ("mean", mean)]:
        print(f"{stem:<{width}} " + " ".join(f"{row[k]:>9.4f}" for k in _TABLE))
    if args.json:
        text = json.dumps({"images": per_image, "mean": mean}, indent=2)
        try:
            atomic_write(args.json, lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
        except FileExistsError:
            raise
        except OSError as error:  # full disk, read-only folder: name the file, not the temp
            raise CliError(
                EXIT_FILE, f"cannot write {args.json}: {error.strerror or error}"
            ) from None
    return EXIT_OK


# ----------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def probability_threshold(text: str) -> float:
    """``--threshold``: a cell probability strictly between 0 and 1 (else all or nothing)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text}")
    return value


# Largest --steps (decades of CPU time) and --patch-size (a 4096 px patch alone needs tens of
# GiB per training step): larger values are typing mistakes, refused as usage errors.
MAX_STEPS = 10**9
MAX_PATCH_SIZE = 4096


def _at_most(limit: int) -> Callable[[str], int]:
    """An argparse type: a positive integer up to ``limit``."""

    def parse(text: str) -> int:
        value = _positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {text}")
        return value

    return parse


def _diameter(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return _positive_float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of pixels or 'auto', got {text}"
        ) from None


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    """``--channel-axis``, ``--diameter`` and ``--conversion`` of ``train``."""
    parser.add_argument(
        "--channel-axis", type=int,
        help="channel axis of multichannel images (RGB: -1; guessed for (Y, X, 3) images)",
    )
    parser.add_argument(
        "--diameter", type=_positive_float,
        help="object diameter in px (default: measured on the labeled cells)",
    )
    parser.add_argument(
        "--conversion", choices=CONVERSIONS,
        help="colour to one channel when fine-tuning a 1-channel model (default: hematoxylin)",
    )


_DEVICES = ["auto", "cpu", "cuda", "mps"]


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-unet`` argument parser (subcommands train, predict, export, evaluate)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train, apply and evaluate U-Net segmentation without a GUI."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    starting = _starting_help()
    _add_train_parser(sub, starting)
    _add_predict_parser(sub, starting)
    _add_export_parser(sub, starting)
    _add_evaluate_parser(sub)
    return parser


def _add_train_parser(sub: Any, starting: str) -> None:
    """The ``train`` subcommand: images and labels in, a checkpoint out."""
    t = sub.add_parser("train", help="train a U-Net on images and labels")
    t.add_argument("images", nargs="+", metavar="IMAGE")
    t.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="LABELS",
        help="label images, paired with the images by order",
    )
    t.add_argument("--out", required=True, metavar="MODEL", help="checkpoint file to write")
    t.add_argument(
        "--from",
        dest="from_model",
        metavar="MODEL",
        help="fine-tune this checkpoint, or a shipped starting model: " + starting,
    )
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_at_most(MAX_STEPS))
    budget.add_argument("--minutes", type=_positive_float)
    t.add_argument("--device", choices=_DEVICES, default="auto")
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--dense-labels",
        action="store_true",
        help="labels are complete: 0 = background (default: 0 = unlabeled, "
        "1 = background, >= 2 cells)",
    )
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--patch-size", type=_at_most(MAX_PATCH_SIZE))
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--w0", type=float)
    t.add_argument("--sigma", type=_positive_float)
    t.add_argument("--depth", type=_positive_int)
    t.add_argument("--width", type=_positive_int, help="channels of the first level")
    t.add_argument("--padding", choices=["valid", "same"])
    t.add_argument(
        "--border-class", action="store_true",
        help="a 3-class network (background, cell, cell border) that splits touching cells "
        "where it sees their border",
    )
    _add_image_options(t)
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=_cmd_train)


def _add_predict_parser(sub: Any, starting: str) -> None:
    """The ``predict`` subcommand: a model and images in, instance label images out."""
    p = sub.add_parser("predict", help="segment images into instance label images")
    p.add_argument(
        "model", metavar="MODEL",
        help="a checkpoint, a bioimage.io package (.zip) or a shipped starting model: "
        + starting,
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also write cell probabilities to DIR/probabilities/",
    )
    p.add_argument("--format", choices=["tif", "png", "npy"], default="tif")
    p.add_argument(
        "--threshold",
        type=probability_threshold,
        help="cell probability threshold in (0, 1) (default: the model's calibrated one)",
    )
    p.add_argument(
        "--min-size",
        type=int,
        help=f"smallest object in px (default: {DEFAULT_MIN_SIZE} px at the model's scale)",
    )
    p.add_argument(
        "--diameter",
        type=_diameter,
        help="object diameter in px in these images, or 'auto' to estimate it (default: "
        "the size in the model's training data; 'auto' for a model that records none, "
        "such as 'nuclei' and models fine-tuned from it)",
    )
    p.add_argument("--tile-size", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--device", choices=_DEVICES, default="auto")
    p.add_argument(
        "--channel-axis", type=int, help="channel axis of multichannel images (RGB: -1)"
    )
    p.add_argument("--conversion", choices=CONVERSIONS,
                   help="colour to one channel for a 1-channel model (default: hematoxylin)")
    p.add_argument("--chunk", type=_positive_int, default=1024, help="zarr chunk edge (px)")
    p.add_argument(
        "--memory-budget",
        type=_positive_float,
        metavar="MB",
        help="shrink zarr chunks to fit this memory",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_predict)


def _add_export_parser(sub: Any, starting: str) -> None:
    """The ``export`` subcommand: a model in, a bioimage.io package out."""
    x = sub.add_parser("export", help="write a model as a bioimage.io model package (.zip)")
    x.add_argument("model", metavar="MODEL",
                   help="a checkpoint, or a shipped starting model: " + starting)
    x.add_argument("--out", required=True, metavar="NAME.zip", help="package file to write")
    x.add_argument(
        "--sample", metavar="IMAGE",
        help="image for the package's test tensors and cover (default: synthetic cells)",
    )
    x.add_argument("--channel-axis", type=int, help="channel axis of --sample (RGB: -1)")
    x.add_argument("--conversion", choices=CONVERSIONS,
                   help="colour to one channel for a 1-channel model (default: the model's)")
    x.add_argument("--name", help="model name (default: from the model or the file name)")
    x.add_argument("--author", action="append", metavar="NAME",
                   help="an author (repeat for several; default: the model's)")
    x.add_argument("--license", metavar="SPDX",
                   help="SPDX license id (default: the model's, else CC-BY-4.0)")
    x.add_argument("--overwrite", action="store_true")
    x.set_defaults(func=_cmd_export)


def _add_evaluate_parser(sub: Any) -> None:
    """The ``evaluate`` subcommand: predicted and ground-truth label folders in, scores out."""
    e = sub.add_parser("evaluate", help="compare predicted with ground-truth label images")
    e.add_argument("pred_dir", metavar="PRED_DIR")
    e.add_argument("gt_dir", metavar="GT_DIR")
    e.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=_cmd_evaluate)


def _fail(code: int, message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (tests call it in-process)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    from .core.checkpoint import CheckpointError
    from .core.tiling import PredictionCancelled

    try:
        return int(args.func(args))
    except CliError as error:
        return _fail(error.code, str(error))
    except (KeyboardInterrupt, PredictionCancelled):
        return _fail(EXIT_CANCELLED, "cancelled")
    except CheckpointError as error:
        return _fail(EXIT_UNREADABLE, str(error))
    except FileNotFoundError as error:
        return _fail(EXIT_FILE, str(error))
    except FileExistsError as error:
        return _fail(EXIT_FILE, f"{error}; pass --overwrite to replace it")
    except ValueError as error:
        return _fail(EXIT_DATA, str(error))
    except OSError as error:
        return _fail(EXIT_FILE, f"{error}")
    except MemoryError as error:
        return _fail(EXIT_DATA, _out_of_memory(error))
    except RuntimeError as error:  # torch's allocators: CPU and CUDA (OutOfMemoryError)
        if not any(words in str(error) for words in _OOM_WORDS):
            raise
        return _fail(EXIT_DATA, _out_of_memory(error))


_OOM_WORDS = ("out of memory", "not enough memory", "can't allocate memory")


def _out_of_memory(error: BaseException) -> str:
    """One line for an allocation that failed, with what to change."""
    detail = (str(error).strip().splitlines() or [""])[0]
    return (
        f"out of memory{f' ({detail})' if detail else ''}: use smaller images, --patch-size "
        "or --batch-size (train), --tile-size, --batch-size or --memory-budget (predict)"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
