"""The four per-chunk tasks of :func:`~.zarr_image.predict_zarr`, and the merge between them."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..instances import component_maxima
from ._models import _prepared, _resolve_model
from ._stores import _open_source, _open_zarr
from .grid import ChunkGrid


def _predict_chunk(
    model_ref: Any,
    source: Any,
    prob_path: str,
    grid: ChunkGrid,
    iy: int,
    ix: int,
    has_channel: bool,
    norm_range: tuple[Any, Any],
    opts: dict[str, Any],
) -> None:
    """Pass 1: foreground probability of one chunk, read with its halo."""
    from ..tiling import predict_region

    model = _prepared(_resolve_model(model_ref), opts.get("device", "auto"))
    source = _open_source(source)
    y0, y1, x0, x1 = grid.core(iy, ix)
    by0, by1, bx0, bx1 = grid.window(iy, ix, grid.halo)
    lead = (slice(None),) if has_channel else ()
    block = np.asarray(source[lead + (slice(by0, by1), slice(bx0, bx1))])
    region = ((y0 - by0, y1 - by0), (x0 - bx0, x1 - bx0))
    probs = predict_region(model, block, region, norm_range=norm_range, **opts)
    del block
    _open_zarr(prob_path)[y0:y1, x0:x1] = probs[1]


def clean_mask(prob: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """Threshold, fill holes, drop small components: the mask label_instances splits."""
    mask = ndi.binary_fill_holes(prob > threshold)
    if min_size > 1:
        comp, n = ndi.label(mask, structure=np.ones((3, 3), bool))
        if n:
            keep = np.bincount(comp.ravel()) >= min_size
            keep[0] = False
            mask = keep[comp]
    return mask


def _chunk_peaks(
    prob_path: str, grid: ChunkGrid, iy: int, ix: int, threshold: float, min_size: int
) -> np.ndarray:
    """Pass 2: largest inscribed radius of each component owned by this chunk."""
    y0, y1, x0, x1 = grid.core(iy, ix)
    wy0, wy1, wx0, wx1 = grid.window(iy, ix, grid.label_halo)
    prob = np.asarray(_open_zarr(prob_path, "r")[wy0:wy1, wx0:wx1])
    mask = clean_mask(prob, threshold, min_size)
    comp, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(0)
    dist = ndi.distance_transform_edt(mask)
    peaks = component_maxima(dist, comp, n)
    h, w = grid.shape
    keep = np.zeros(n, dtype=bool)
    for k, (sy, sx) in enumerate(ndi.find_objects(comp)):
        top, left = sy.start + wy0, sx.start + wx0
        cut = (
            (sy.start == 0 and wy0 > 0)
            or (sx.start == 0 and wx0 > 0)
            or (sy.stop == mask.shape[0] and wy1 < h)
            or (sx.stop == mask.shape[1] and wx1 < w)
        )
        keep[k] = not cut and y0 <= top < y1 and x0 <= left < x1
    return peaks[keep]


_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _label_chunk(
    prob_path: str,
    labels_path: str,
    grid: ChunkGrid,
    iy: int,
    ix: int,
    threshold: float,
    min_size: int,
    min_distance: float | None,
) -> dict[str, np.ndarray | int]:
    """Pass 3: local instance ids of one chunk + what the merge step needs from it."""
    from ..instances import label_instances

    y0, y1, x0, x1 = grid.core(iy, ix)
    wy0, wy1, wx0, wx1 = grid.window(iy, ix, grid.label_halo)
    prob = np.asarray(_open_zarr(prob_path, "r")[wy0:wy1, wx0:wx1])
    window = label_instances(prob, threshold, min_size, min_distance=min_distance)
    del prob
    cy, cx = y0 - wy0, x0 - wx0
    hh, ww = y1 - y0, x1 - x0
    ids, inverse = np.unique(window[cy : cy + hh, cx : cx + ww], return_inverse=True)
    local = inverse.reshape(hh, ww).astype(np.uint32)
    if ids.size and ids[0] != 0:
        local += 1
    n = int(local.max()) if local.size else 0
    # merge candidates seen from this chunk: core edge pixel p, outside neighbour q, same id
    ey = np.concatenate([np.zeros(ww, int), np.full(ww, hh - 1), np.arange(hh), np.arange(hh)])
    ex = np.concatenate([np.arange(ww), np.arange(ww), np.zeros(hh, int), np.full(hh, ww - 1)])
    edge = np.unique(ey * ww + ex)
    ey, ex = edge // ww, edge % ww
    p_ids, q_y, q_x = [], [], []
    for dy, dx in _NEIGHBOURS:
        qy, qx = ey + dy, ex + dx
        outside = (qy < 0) | (qy >= hh) | (qx < 0) | (qx >= ww)
        wy, wx = qy + cy, qx + cx
        inside_window = (wy >= 0) & (wy < window.shape[0]) & (wx >= 0) & (wx < window.shape[1])
        sel = outside & inside_window
        py, px, qys, qxs = ey[sel], ex[sel], wy[sel], wx[sel]
        win_p = window[py + cy, px + cx]
        same = (win_p != 0) & (win_p == window[qys, qxs])
        p_ids.append(local[py[same], px[same]])
        q_y.append(qys[same] + wy0)
        q_x.append(qxs[same] + wx0)
    del window
    _open_zarr(labels_path)[y0:y1, x0:x1] = local
    return {
        "n": n,
        "sizes": np.bincount(local.ravel(), minlength=n + 1).astype(np.int64),
        "top": local[0].copy(),
        "bottom": local[-1].copy(),
        "left": local[:, 0].copy(),
        "right": local[:, -1].copy(),
        "pairs": np.stack([np.concatenate(p_ids), np.concatenate(q_y), np.concatenate(q_x)]).astype(
            np.int64
        ),
    }


def _relabel_chunk(labels_path: str, grid: ChunkGrid, iy: int, ix: int, lut: np.ndarray) -> None:
    """Pass 4: local ids -> global ids."""
    y0, y1, x0, x1 = grid.core(iy, ix)
    store = _open_zarr(labels_path)
    store[y0:y1, x0:x1] = lut[np.asarray(store[y0:y1, x0:x1])]


def _merge(grid: ChunkGrid, results: list[dict[str, Any]], min_size: int) -> list[np.ndarray]:
    """Union-find over the merge pairs; returns one lookup table (local -> global) per chunk."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = np.array([r["n"] for r in results], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    if total == 0:
        return [np.zeros(1, np.uint32) for _ in results]
    sizes = np.concatenate([r["sizes"][1:] for r in results])
    cores = [grid.core(*ij) for ij in grid.indices()]
    src, dst = [], []
    for k, r in enumerate(results):
        p, qy, qx = r["pairs"]
        if p.size == 0:
            continue
        owner = grid.owner(qy, qx)
        for k2 in np.unique(owner):
            sel = owner == k2
            oy0, oy1, ox0, ox1 = cores[k2]
            ys, xs = qy[sel], qx[sel]
            o = results[k2]
            q = np.where(
                ys == oy0,
                o["top"][np.clip(xs - ox0, 0, ox1 - ox0 - 1)],
                np.where(
                    ys == oy1 - 1,
                    o["bottom"][np.clip(xs - ox0, 0, ox1 - ox0 - 1)],
                    np.where(
                        xs == ox0,
                        o["left"][np.clip(ys - oy0, 0, oy1 - oy0 - 1)],
                        o["right"][np.clip(ys - oy0, 0, oy1 - oy0 - 1)],
                    ),
                ),
            )
            ok = q > 0
            src.append(offsets[k] + p[sel][ok] - 1)
            dst.append(offsets[k2] + q[ok].astype(np.int64) - 1)
    a = np.concatenate(src) if src else np.zeros(0, np.int64)
    b = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(total, total))
    _, comp = connected_components(graph, directed=False)
    comp_size = np.bincount(comp, weights=sizes)
    keep = comp_size >= 1
    # global ids 1..N in order of each object's first node (raster order of chunks)
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first, kind="stable")  # component ids sorted by first appearance
    ranked = np.zeros(comp_size.size, np.int64)
    kept_in_order = order[keep[order]]
    ranked[kept_in_order] = np.arange(1, kept_in_order.size + 1)
    node_id = ranked[comp].astype(np.uint32)
    return [
        np.concatenate([[0], node_id[offsets[k] : offsets[k + 1]]]).astype(np.uint32)
        for k in range(len(results))
    ]
