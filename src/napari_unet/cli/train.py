"""``napari-unet train``: train or fine-tune a model on image/label pairs."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    EXIT_CANCELLED,
    EXIT_DATA,
    EXIT_FILE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CliError,
    _bar,
    _channel_axis,
    _check_out_file,
    _load_model,
    _read,
)


def _save(model: Any, out: Path, overwrite: bool) -> None:
    """Save the model atomically; any failure (full disk, ...) is one line naming ``out``."""
    from ..core.checkpoint import save_model

    try:
        save_model(model, out, overwrite=overwrite)
    except FileExistsError:
        raise CliError(EXIT_FILE, f"{out} already exists; pass --overwrite to replace it") from None
    except OSError as error:
        raise CliError(EXIT_FILE, f"cannot write {out}: {error.strerror or error}") from None


def _warn_if_dense(paths: Sequence[str], labels: Sequence[np.ndarray]) -> None:
    """Warn when labels read as painted (1 = background) look like complete labels."""
    from ..core.labels import looks_dense

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
    from ..core.device import resolve_device
    from ..core.io import available_memory

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


def _base_model(
    args: argparse.Namespace, images: list[np.ndarray], channel_axis: int | None
) -> Any:
    """The model to train: ``--from`` (a checkpoint or starting model), else a new U-Net."""
    from ..core.model import DEFAULT_CONFIG, UNet
    from ..core.training import FINE_TUNE_LEARNING_RATE

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
    from ..core.training import TrainConfig

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

    from ..core.training import TrainingDiverged, train

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
