"""Many image files predicted into a folder (:func:`predict_files`), locally or on dask.

In-memory files are one task each; zarr files go through :func:`~.zarr_image.predict_zarr`.
With a ``client``, the model travels as checkpoint bytes (or a checkpoint path) and is loaded
inside the task, once per worker thread. Workers must see the same file system as the caller.
Without a client nothing imports dask.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..folder_scale import FolderScale
from ..instances import DEFAULT_MIN_SIZE
from ..model import UNet
from ..segment import DEFAULT_FLIPS
from ._models import _model_bytes, _prepared, _resolve_model
from ._runner import _refuse_existing, _Runner
from .zarr_image import predict_zarr

_FileJob = tuple[Path, Path, Path | None]  # input, label output, probability output


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def output_path(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "tif") -> Path:
    """Where :func:`predict_files` writes the labels of ``path``: same stem, ``fmt`` suffix
    (``.zarr`` for zarr inputs)."""
    path = Path(path)
    suffix = ".zarr" if _is_zarr(path) else f".{fmt}"
    return Path(out_dir) / f"{path.stem}{suffix}"


def probability_path(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "tif") -> Path:
    """Where the foreground probability of ``path`` goes (``probabilities/`` under ``out_dir``);
    float data, so PNG becomes TIFF."""
    path = Path(path)
    suffix = ".zarr" if _is_zarr(path) else (".npy" if fmt == "npy" else ".tif")
    return Path(out_dir) / "probabilities" / f"{path.stem}{suffix}"


def predict_file(
    model_ref: Any,
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    threshold: float | None = None,
    min_size: int | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    channel_axis: int | None = None,
    probabilities: str | os.PathLike | None = None,
    overwrite: bool = False,
    diameter: float | str | None = None,
    conversion: str | None = None,
    folder_scale: FolderScale | None = None,
    flips: bool = DEFAULT_FLIPS,
) -> Path:
    """Predict one in-memory image file and write its instance labels (atomically) to ``out``.

    ``model_ref``: a UNet, checkpoint bytes or a checkpoint path. 2D images give ``(Y, X)``
    labels, stacks ``(Z, Y, X)`` (or stacks of stacks, ``(T, Z, Y, X)``) labels of the same
    shape with ids unique over the whole stack. PNG output is uint16 (ValueError when ids
    exceed 65535). ``diameter``, ``threshold``, ``min_size``: see ``core.segment.segment``
    (None: the model's object scale and calibrated threshold); ``folder_scale``: see
    :func:`file_maps`; ``flips``: average over the image's flips (``tiling.flip_average``).
    """
    maps = file_maps(
        model_ref,
        path,
        channel_axis=channel_axis,
        diameter=diameter,
        conversion=conversion,
        tile_size=tile_size,
        batch_size=batch_size,
        device=device,
        folder_scale=folder_scale,
        flips=flips,
    )
    return write_file_labels(
        maps,
        out,
        threshold=threshold,
        min_size=min_size,
        probabilities=probabilities,
        overwrite=overwrite,
    )


@dataclass
class FileMaps:
    """The network's output for one image file, before labelling (see :func:`file_maps`)."""

    fg: np.ndarray
    interior: np.ndarray | None
    factor: float
    threshold: float  # the model's calibrated threshold (``segment.model_threshold``)


def file_maps(
    model_ref: Any,
    path: str | os.PathLike,
    *,
    channel_axis: int | None = None,
    diameter: float | str | None = None,
    conversion: str | None = None,
    folder_scale: FolderScale | None = None,
    **kw: Any,
) -> FileMaps:
    """Read ``path`` and run the network on it (the part of ``predict_file`` on the cores).

    With ``diameter="auto"``, ``folder_scale`` (one per folder) reuses the object scale
    estimated on an earlier file while the objects found at it stay alike.
    """
    from ..io import read_image
    from ..segment import guess_channel_axis, model_threshold, predict_maps, prepare_image

    model = _resolve_model(model_ref)
    image = np.asarray(read_image(path))
    if channel_axis is None:
        channel_axis = guess_channel_axis(image.shape)
    arr, axis = prepare_image(image, channel_axis, model, conversion)
    net = _prepared(model, kw.get("device", "auto"))  # BatchNorm folded once per folder
    if diameter == "auto" and folder_scale is not None:
        fg, interior, factor = folder_scale.predict(net, arr, channel_axis=axis, **kw)
    else:
        fg, interior, factor = predict_maps(net, arr, channel_axis=axis, diameter=diameter, **kw)
    return FileMaps(fg, interior, factor, model_threshold(model))


def write_file_labels(
    maps: FileMaps,
    out: str | os.PathLike,
    *,
    threshold: float | None = None,
    min_size: int | None = None,
    probabilities: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Label ``maps`` and write the labels (and probabilities) atomically: the rest of
    ``predict_file``, which can run beside the network's work on the next file."""
    from ..io import write_array
    from ..segment import label_probability, min_size_for

    threshold = maps.threshold if threshold is None else float(threshold)
    min_size = min_size_for(maps.factor) if min_size is None else int(min_size)
    labels = label_probability(maps.fg, threshold, min_size, maps.interior)
    out = Path(out)
    if out.suffix.lower() == ".png":
        if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
            raise ValueError(
                f"{int(labels.max())} objects do not fit a 16-bit PNG: use --format tif or npy"
            )
        labels = labels.astype(np.uint16)
    if probabilities is not None:
        write_array(probabilities, maps.fg.astype(np.float32), overwrite=overwrite)
    write_array(out, labels, overwrite=overwrite)
    return out


def _predict_local(
    ref: Any, jobs: Sequence[_FileJob], kw: dict[str, Any], counter: _Runner
) -> None:
    """In-memory files here: labelling and writing one file in a second thread while the
    network runs on the next (torch releases the interpreter lock in its kernels)."""
    from concurrent.futures import ThreadPoolExecutor

    kw = dict(kw, folder_scale=FolderScale())
    write_kw = {k: kw.pop(k) for k in ("threshold", "min_size", "overwrite")}
    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-label") as pool:
        for p, o, q in jobs:
            maps = file_maps(ref, p, **kw)
            if pending is not None:
                pending.result()  # the previous file's error raises here, in order
                counter.tick()
            pending = pool.submit(write_file_labels, maps, o, probabilities=q, **write_kw)
        if pending is not None:
            pending.result()
            counter.tick()


def _check_inputs(paths: Sequence[Path]) -> None:
    """Every input readable (header, size, small files whole) before any output is written."""
    from ..io import check_readable

    for p in paths:
        check_readable(p)  # ValueError "cannot read image ..." names the file


def _plan_files(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    fmt: str,
    probabilities: bool,
    overwrite: bool,
) -> tuple[list[Path], list[Path], list[Path | None]]:
    """``(inputs, label outputs, probability outputs)``, after the checks of predict_files."""
    if fmt not in ("tif", "png", "npy"):
        raise ValueError(f"format must be tif, png or npy, got {fmt!r}")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise NotADirectoryError(f"--out must be a folder, but {out_dir} is a file")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
    outs = [output_path(p, out_dir, fmt) for p in paths]
    probs = [probability_path(p, out_dir, fmt) if probabilities else None for p in paths]
    seen: dict[Path, Path] = {}
    for p, o in zip(paths, outs, strict=True):
        if o in seen:
            raise ValueError(f"{seen[o]} and {p} would both be written to {o}")
        seen[o] = p
    _refuse_existing([*outs, *probs], overwrite)
    return paths, outs, probs


def _file_model_ref(model_path: Any, model: UNet, client: Any) -> Any:
    """What file tasks load the model from: the path, or the UNet (its bytes with a client)."""
    if not isinstance(model_path, UNet):
        return str(model_path)
    return _model_bytes(model) if client is not None else model


def _predict_on_client(
    client: Any, ref: Any, jobs: Sequence[_FileJob], kw: dict[str, Any], counter: _Runner
) -> None:
    """In-memory files as dask tasks (paths as strings); the first failed task's error raises."""
    from distributed import as_completed

    if isinstance(ref, bytes):
        [ref] = client.scatter([ref], broadcast=True)
    futures = [
        client.submit(
            predict_file,
            ref,
            str(p),
            str(o),
            probabilities=None if q is None else str(q),
            pure=False,
            **kw,
        )
        for p, o, q in jobs
    ]
    try:
        for future in as_completed(futures):
            future.result()  # re-raises the task's error here
            counter.tick()
    finally:
        for f in futures:
            f.cancel()


def _predict_zarr_files(
    model: UNet, jobs: Sequence[_FileJob], kw: dict[str, Any], client: Any, counter: _Runner
) -> None:
    """Zarr inputs streamed by predict_zarr (its threshold / min_size resolved for the model)."""
    kw = dict(kw)
    if kw["threshold"] is None:
        from ..segment import model_threshold

        kw["threshold"] = model_threshold(model)
    kw["min_size"] = DEFAULT_MIN_SIZE if kw["min_size"] is None else kw["min_size"]
    for p, o, q in jobs:
        predict_zarr(model, p, o, probabilities=q, client=client, **kw)
        counter.tick()


def _predict_in_memory(
    ref: Any,
    jobs: Sequence[_FileJob],
    kw: dict[str, Any],
    client: Any,
    counter: _Runner,
    pipeline: bool,
) -> None:
    """The in-memory files: on ``client``, else here (pipelined, or one after the other)."""
    if client is not None:
        if jobs:
            _predict_on_client(client, ref, jobs, kw, counter)
    elif pipeline:
        _predict_local(ref, jobs, kw, counter)
    else:
        shared = FolderScale()
        for p, o, q in jobs:
            predict_file(ref, p, o, probabilities=q, folder_scale=shared, **kw)
            counter.tick()


def predict_files(
    model_path: UNet | str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "tif",
    threshold: float | None = None,
    min_size: int | None = None,
    diameter: float | str | None = None,
    conversion: str | None = None,
    tile_size: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    channel_axis: int | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    chunk: int = 1024,
    memory_budget_mb: float | None = None,
    client: Any = None,
    progress: Callable[[int, int], Any] | None = None,
    pipeline: bool = True,
    flips: bool = DEFAULT_FLIPS,
) -> list[Path]:
    """Predict every file in ``paths`` into ``out_dir`` (one label image per input, same stem).

    Everything is checked before any work starts: ``out_dir`` is not a file, inputs exist and
    can be read (:func:`~napari_unet.core.io.check_readable`), no two inputs share a stem, and
    no output exists (unless ``overwrite``), so a bad input never leaves the folder half done.
    In-memory files are one task each (on ``client`` when given, loading the model inside the
    task; without a client, each file is labelled and written beside the network's work on the
    next one unless ``pipeline=False``); zarr inputs are streamed with :func:`predict_zarr`.
    ``progress(done, total)`` counts files. ``threshold``/``min_size``/``diameter`` None: the
    model's calibrated threshold and object scale (``core.segment``; zarr inputs are streamed
    at the image's own scale).  ``diameter="auto"`` estimates the scale on the first file and
    keeps it for the next ones while their objects look alike (:mod:`.folder_scale`; on a
    ``client`` each file is estimated on its own).  ``flips``: average each in-memory file's
    prediction over its flips (``core.segment.DEFAULT_FLIPS``; zarr inputs predict once).
    Returns the written label paths, in input order.
    """
    paths, outs, probs = _plan_files(paths, out_dir, fmt, probabilities, overwrite)
    _check_inputs(paths)
    model = _resolve_model(model_path)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    kw = dict(threshold=threshold, min_size=min_size, tile_size=tile_size,
              batch_size=batch_size, device=device)
    counter = _Runner(None, progress, len(paths))
    flat = [(p, o, q) for p, o, q in zip(paths, outs, probs, strict=True) if not _is_zarr(p)]
    file_kw = dict(
        kw, channel_axis=channel_axis, overwrite=overwrite, diameter=diameter,
        conversion=conversion, flips=flips,
    )
    ref = _file_model_ref(model_path, model, client)
    _predict_in_memory(ref, flat, file_kw, client, counter, pipeline)
    zarrs = [(p, o, q) for p, o, q in zip(paths, outs, probs, strict=True) if _is_zarr(p)]
    zarr_kw = dict(kw, chunk=chunk, memory_budget_mb=memory_budget_mb, overwrite=overwrite)
    _predict_zarr_files(model, zarrs, zarr_kw, client, counter)
    return outs
