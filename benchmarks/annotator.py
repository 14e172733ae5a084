"""A simulated annotator: one click at a time where the prediction is worst, live training.

For each kind of image (``kinds.KINDS``: fluorescence and H&E nuclei, phase-contrast cells, EM
cell interiors) a scripted user corrects one val image, starting from the shipped model
(fluorescence) or from a model trained on 10 painted cells (``--start-steps`` steps, the
``sparse-10`` protocol of ``kinds.py``). At every click the user picks the largest plainly
wrong object of the current prediction:

* a predicted object that matches no true object (IoU < 0.5) and lies mostly (> 50%) off the
  true objects: Alt-click on it (``core.annotate.click_edit(..., "remove")``);
* a true object that no predicted object matches: a click at its centre (the point farthest
  from its border), whose mask is the one the click tool grows (``"add"``, with its ring).

The edit enters a :class:`napari_unet.core.live.LiveTrainer` (as Live mode does), which trains
``--steps-per-click`` steps before the next click. Recorded after every update: accuracy@0.5
of the corrected image, the wall time, whether the clicked object is right now; every
``--others-every`` clicks the mean accuracy@0.5 of ``--others`` uncorrected val images.
The prediction the user sees follows their annotations where they made them
(``core.instances.follow_annotations``, as the plugin shows it; ``--shown`` picks another
view), and ``clicked_fixed_by_view`` says how many clicked objects are right in each view:
``network`` (the network's own instances: what it learned), ``seeded`` (the user's cells only
seed the split) and ``annotated``. ``--variants`` compares the correction-weighted sampling
(``weighted``: half the patches on recent corrections, their pixels x3) with plain sampling
(``plain``) on the same start::

    .venv/bin/python benchmarks/annotator.py --kinds fluo phase he em --clicks 20 \\
        --json benchmarks/results_annotator.json --png benchmarks/annotator_curves.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import kinds as K  # noqa: E402

from napari_unet.core.annotate import (  # noqa: E402
    ClickEdit,
    add_cell,
    apply_edit,
    background_ring,
    click_edit,
)
from napari_unet.core.instances import follow_annotations, split_at_cells  # noqa: E402
from napari_unet.core.live import LiveSettings, LiveTrainer  # noqa: E402
from napari_unet.core.metrics import iou_matrix  # noqa: E402
from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.scale import model_diameter  # noqa: E402
from napari_unet.core.segment import (  # noqa: E402
    Annotations,
    label_probability,
    min_size_for,
    model_threshold,
)
from napari_unet.core.training import train_to_completion  # noqa: E402
from napari_unet.models import load_pretrained  # noqa: E402

#: the shipped starting model of each kind (``--start shipped``)
SHIPPED = {"fluo": "nuclei", "he": "he-nuclei", "phase": "phase-cells", "em": "em-cells"}
VARIANTS = {
    "weighted": {"recent_fraction": 0.5, "correction_weight": 3.0},
    "plain": {"recent_fraction": 0.0, "correction_weight": 1.0},
    "adjusted": {"recent_fraction": 0.5, "correction_weight": 3.0, "threshold_frame": True},
    "replay": {"recent_fraction": 0.5, "correction_weight": 3.0, "replay_fraction": 0.5},
    "balanced": {"recent_fraction": 0.5, "correction_weight": 3.0, "balanced_distill": True},
    "balanced-replay": {"recent_fraction": 0.5, "correction_weight": 3.0,
                        "balanced_distill": True, "replay_fraction": 0.5},
}


def start_model(kind: K.Kind, train: list, args: argparse.Namespace) -> UNet:
    """The shipped model (fluorescence) or a new network trained on 10 painted cells.

    ``--cache DIR`` keeps the 10-cell models between runs (same kind, seed and steps).
    """
    from napari_unet.core.checkpoint import load_model, save_model

    if kind.name == "fluo" or args.start == "shipped":
        return load_pretrained(SHIPPED[kind.name])
    cached = None if args.cache is None else \
        args.cache / f"{kind.name}-10cells-s{args.seed}-{args.start_steps}.pt"
    if cached is not None and cached.is_file():
        return load_model(cached)
    images, labels, dense = K.annotation("sparse-10", train, args.seed, kind)
    model = UNet(**{**DEFAULT_CONFIG, "in_channels": 3 if kind.rgb else 1})
    train_to_completion(model, images, labels, steps=args.start_steps, dense=dense,
                        seed=args.seed, channel_axis=-1 if kind.rgb else None, device="cpu")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, cached)
    return model


def best_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per predicted and per true object (sorted ids): its best IoU with the other image's."""
    iou = iou_matrix(pred, gt)  # (n_gt, n_pred)
    if iou.size == 0:
        return np.zeros(iou.shape[1]), np.zeros(iou.shape[0])
    return iou.max(axis=0), iou.max(axis=1)


def worst_mistake(pred: np.ndarray, gt: np.ndarray, done: set) -> tuple[str, int, int] | None:
    """``(action, id, area)`` of the largest plainly wrong object not clicked before."""
    options = mistakes(pred, gt, done)
    return max(options, key=lambda o: o[2]) if options else None


def mistakes(pred: np.ndarray, gt: np.ndarray, done: set) -> list[tuple[str, int, int]]:
    """Every plainly wrong object ``(action, id, area)`` not clicked before."""
    pred_ids, gt_ids = np.unique(pred[pred > 0]), np.unique(gt[gt > 0])
    p_best, g_best = best_iou(pred, gt)
    p_area = ndi.sum_labels(np.ones_like(pred), pred, pred_ids)
    on_truth = ndi.sum_labels(gt > 0, pred, pred_ids) / np.maximum(p_area, 1)
    g_area = ndi.sum_labels(np.ones_like(gt), gt, gt_ids)
    options = [("remove", int(i), int(a)) for i, a, b, t in
               zip(pred_ids, p_area, p_best, on_truth, strict=True)
               if b < 0.5 and t < 0.5 and ("remove", int(i)) not in done]
    options += [("add", int(i), int(a)) for i, a, b in zip(gt_ids, g_area, g_best, strict=True)
                if b < 0.5 and ("add", int(i)) not in done]
    return options


def n_mistakes(model: UNet, sample, kind: K.Kind) -> int:
    """How many plainly wrong objects the model's prediction of ``sample`` has."""
    from napari_unet.core.segment import segment

    seg = segment(model, sample[1], channel_axis=-1 if kind.rgb else None)
    return len(mistakes(seg.instances, sample[2], set()))


def centre(mask: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask`` farthest from its border (where a user clicks)."""
    dist = ndi.distance_transform_edt(mask)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(dist)), mask.shape))


class Session:
    """One corrected image, its live trainer and the current prediction."""

    def __init__(self, model: UNet, image: np.ndarray, gt: np.ndarray, kind: K.Kind,
                 settings: LiveSettings, paint: bool = False, shown: str = "network") -> None:
        self.gt, self.kind, self.paint, self.shown = gt, kind, paint, shown
        axis = -1 if kind.rgb else None
        self.grey = (image.astype(np.float32).mean(axis=-1) if kind.rgb
                     else image.astype(np.float32))
        self.labels = np.zeros(gt.shape, np.int32)
        self.threshold = model_threshold(model)
        self.fg, self.pred = self._predict_start(model, image, axis)
        self.views = {"network": self.pred}
        self.trainer = LiveTrainer(model, image, settings, channel_axis=axis,
                                   factor=self.factor)

    def _predict_start(self, model: UNet, image: np.ndarray, axis: int | None):
        from napari_unet.core.segment import segment

        seg = segment(model, image, channel_axis=axis)
        self.factor = seg.factor
        self.model_diameter = model_diameter(model) / seg.factor
        return seg.probability, seg.instances

    def predict(self) -> None:
        """The live trainer's prediction of the whole image, labelled."""
        fg, interior, region = self.trainer.predict()
        self.fg = fg
        self.kept = self.trainer.kept_cells(fg, region)  # what the Live warning reads
        size = min_size_for(self.factor)
        net = label_probability(fg, self.threshold, size, interior)
        edits = Annotations.of(self.labels)
        # what each display makes of the same prediction: the network's own split; the user's
        # cells seeding it; the user's annotations winning where they are (``--shown``)
        self.views = {"network": net, "seeded": split_at_cells(net, edits.cells, size),
                      "annotated": follow_annotations(net, edits.cells, edits.background, size)}
        self.pred = self.views[self.shown]

    def click(self, action: str, obj: int) -> tuple[np.ndarray, float | None]:
        """Apply one click on object ``obj``; ``(object mask, add-click mask IoU)``."""
        mask = (self.pred == obj) if action == "remove" else (self.gt == obj)
        if action == "add" and self.paint:
            edit = self._painted(mask)
        else:
            edit = click_edit(self.labels, centre(mask), action, predicted=self.pred,
                              probability=self.fg, image=self.grey,
                              model_diameter=self.model_diameter,
                              cell_threshold=self.threshold)
        iou = None
        if edit is not None:
            self.labels = apply_edit(self.labels, edit)
            changed = np.zeros(self.labels.shape, bool)
            changed[edit.indices] = True
            self.trainer.update(self.labels, changed)
            if action == "add":
                cell = self.labels == edit.new_id
                iou = float((cell & mask).sum() / max((cell | mask).sum(), 1))
        elif action == "add":
            iou = 0.0
        return mask, iou

    def _painted(self, mask: np.ndarray) -> ClickEdit:
        """A user painting the missed cell exactly (napari's brush), with the same background
        ring as the click tool, off the true cells: what learning does with a perfect mask."""
        new, value, indices = add_cell(self.labels, mask, return_indices=True)
        ring = background_ring(new, new == value, avoid=self.gt > 0)
        indices = tuple(np.concatenate(pair) for pair in zip(indices, ring, strict=True))
        values = np.concatenate([np.full(indices[0].size - ring[0].size, value, np.int32),
                                 np.full(ring[0].size, 1, np.int32)])
        return ClickEdit(indices, values, int(value))

    def fixed(self, action: str, mask: np.ndarray, pred: np.ndarray | None = None) -> bool:
        """Is the clicked object right now in ``pred`` (default: what the user sees; removed:
        no object there; added: found)?"""
        pred = self.pred if pred is None else pred
        ids, counts = np.unique(pred[mask], return_counts=True)
        for i, c in zip(ids, counts, strict=True):
            if i == 0:
                continue
            iou = c / ((pred == i) | mask).sum()
            if iou >= 0.5:
                return action == "add"
        return action == "remove"


    def why(self, action: str, mask: np.ndarray) -> dict:
        """Why a clicked object is still wrong: the share of it above the threshold, the best
        IoU of a predicted object with it, and how many predicted objects cover it."""
        ids = np.unique(self.pred[mask])
        ids = ids[ids > 0]
        best = max((float((mask & (self.pred == i)).sum() / (mask | (self.pred == i)).sum())
                    for i in ids), default=0.0)
        return {"covered": round(float(np.mean(self.fg[mask] > self.threshold)), 3),
                "best_iou": round(best, 3), "pieces": int(ids.size)}


def others_accuracy(model: UNet, others: list, kind: K.Kind) -> float:
    """Mean accuracy@0.5 of the uncorrected val images."""
    model.eval()
    return K.score_unet(model, others, kind)["accuracy"]


def run_variant(model0: UNet, target, others: list, kind: K.Kind, variant: str,
                args: argparse.Namespace, log) -> dict:
    """One annotator run: clicks, live updates, the curves."""
    import copy

    model = copy.deepcopy(model0)
    settings = LiveSettings(learning_rate=args.lr, seed=args.seed, device="cpu",
                            **{"anchor": args.anchor, **VARIANTS[variant]})
    session = Session(model, target[1], target[2], kind, settings, paint=args.paint,
                      shown=args.shown)
    base_others = others_accuracy(model, others, kind)
    curve = [{"clicks": 0, "seconds": 0.0, "accuracy": K.accuracy(session.pred, target[2]),
              "others": base_others}]
    done: set = set()
    fixed, ious, elapsed = [], [], 0.0
    fixed_in: dict[str, list[bool]] = {}
    for n in range(1, args.clicks + 1):
        mistake = worst_mistake(session.pred, target[2], done)
        if mistake is None:
            break
        action, obj, _ = mistake
        done.add((action, obj))
        mask, iou = session.click(action, obj)
        if iou is not None:
            ious.append(iou)
        t0 = time.perf_counter()
        for _ in range(args.steps_per_click):
            session.trainer.step()
        session.predict()
        elapsed += time.perf_counter() - t0
        fixed.append(session.fixed(action, mask))
        for view, pred in session.views.items():
            fixed_in.setdefault(view, []).append(session.fixed(action, mask, pred))
        why = session.why(action, mask) if not fixed[-1] else {}
        point = {"clicks": n, "seconds": round(elapsed, 2), "action": action,
                 "accuracy": K.accuracy(session.pred, target[2]), "fixed": fixed[-1],
                 "kept": session.kept, **why}
        if n % args.others_every == 0 or n == args.clicks:
            point["others"] = others_accuracy(session.trainer.model, others, kind)
        curve.append(point)
        log(kind.name, variant, point, f"mask IoU {iou}" if iou is not None else "")
    last_others = next(p["others"] for p in reversed(curve) if "others" in p)
    return {
        "clicked_fixed_fraction": float(np.mean(fixed)) if fixed else None,
        "clicked_fixed_by_view": {v: float(np.mean(f)) for v, f in fixed_in.items()},
        "shown": args.shown,
        "uncorrected_delta": float(last_others - base_others),
        "mask_iou_median": float(np.median(ious)) if ious else None,
        "accuracy_gain": float(curve[-1]["accuracy"] - curve[0]["accuracy"]),
        "seconds_per_update": elapsed / max(len(fixed), 1),
        "curve": curve,
    }


def click_masks(model: UNet, images: list, kind: K.Kind) -> dict:
    """IoU of the add-click mask of every missed object (clicked at its centre), no training."""
    from napari_unet.core.segment import segment

    ious, on_found = [], []
    for _, image, gt in images:
        seg = segment(model, image, channel_axis=-1 if kind.rgb else None)
        size = model_diameter(model) / seg.factor
        grey = image.astype(np.float32).mean(axis=-1) if kind.rgb else image.astype(np.float32)
        _, g_best = best_iou(seg.instances, gt)
        labels = np.zeros(gt.shape, np.int32)
        for obj, best in zip(np.unique(gt[gt > 0]), g_best, strict=True):
            if best >= 0.5:
                continue
            mask = gt == obj
            point = centre(mask)
            edit = click_edit(labels, point, "add", predicted=seg.instances,
                              probability=seg.probability, image=grey, model_diameter=size,
                              cell_threshold=model_threshold(model))
            cell = np.zeros(gt.shape, bool)
            if edit is not None:
                cell[tuple(i[edit.values == edit.new_id] for i in edit.indices)] = True
            ious.append(float((cell & mask).sum() / (cell | mask).sum()))
            on_found.append(bool(seg.probability[point] > 0.5))
    ious_a, found = np.array(ious), np.array(on_found, bool)
    return {"n": len(ious), "median": float(np.median(ious_a)) if ious else None,
            "mean": float(ious_a.mean()) if ious else None,
            "median_on_found": float(np.median(ious_a[found])) if found.any() else None,
            "median_on_missed": float(np.median(ious_a[~found])) if (~found).any() else None}


def draw_mistakes(session: Session, image: np.ndarray, path: Path, n: int = 6) -> None:
    """The ``n`` largest plainly wrong objects of the start prediction (yellow) with the truth
    (green) and the prediction (red): what the simulated user will click first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt, pred = session.gt, session.pred
    grey = image.astype(np.float32) if image.ndim == 2 else image.astype(np.float32).mean(-1)
    lo, hi = np.percentile(grey, (1, 99.8))
    fig, axes = plt.subplots(2, (n + 1) // 2, figsize=(5 * ((n + 1) // 2), 10))
    for ax, (action, obj, area) in zip(axes.flat, sorted(mistakes(pred, gt, set()),
                                                       key=lambda m: -m[2])[:n], strict=False):
        mask = pred == obj if action == "remove" else gt == obj
        cy, cx = centre(mask)
        win = np.s_[max(cy - 120, 0):cy + 120, max(cx - 120, 0):cx + 120]
        ax.imshow(grey[win], cmap="gray", vmin=lo, vmax=hi)
        for layer, colour, width in ((gt > 0, "lime", 0.8), (pred > 0, "red", 0.8),
                                     (mask, "yellow", 2.0)):
            ax.contour(layer[win], [0.5], colors=colour, linewidths=width)
        ax.set_title(f"{action} {obj} ({area} px)")
    fig.savefig(path, dpi=60)
    plt.close(fig)


def merge(paths: list[Path]) -> dict:
    """The kinds of several result files in one (later files win), with each file's args."""
    merged: dict = {"args": [], "kinds": {}}
    for path in paths:
        part = json.loads(path.read_text())
        merged["args"].append(part["args"])
        merged["kinds"].update(part["kinds"])
    return merged


def draw(results: dict, path: Path) -> None:
    """Accuracy@0.5 against clicks and wall time, per kind: the corrected image (line) and the
    uncorrected ones (dashed, with markers where they were measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for kind, by_variant in results["kinds"].items():
        for variant, r in by_variant.items():
            style = "-" if variant == "weighted" else ":"
            xs = [p["clicks"] for p in r["curve"]]
            ts = [p["seconds"] for p in r["curve"]]
            ys = [p["accuracy"] for p in r["curve"]]
            line, = axes[0].plot(xs, ys, style, label=f"{kind} {variant}")
            axes[1].plot(ts, ys, style, color=line.get_color())
            others = [p for p in r["curve"] if p.get("others") is not None]
            for ax, key in ((axes[0], "clicks"), (axes[1], "seconds")):
                ax.plot([p[key] for p in others], [p["others"] for p in others], "--o",
                        color=line.get_color(), markersize=3, linewidth=1)
    threads = sorted({str(a.get("threads", "?")) for a in _run_args(results)})
    axes[0].set_xlabel("clicks")
    axes[1].set_xlabel(f"training + prediction time (s, {'/'.join(threads)} CPU threads)")
    for ax in axes:
        ax.set_ylabel("accuracy@0.5 (dashed: uncorrected images)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Simulated annotator, live training (benchmarks/annotator.py)")
    fig.tight_layout()
    fig.savefig(path)


def _run_args(results: dict) -> list[dict]:
    """The command-line arguments of each run merged into ``results``."""
    args = results.get("args", {})
    return args if isinstance(args, list) else [args]


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(K.KINDS), choices=list(K.KINDS))
    parser.add_argument("--variants", nargs="+", default=["weighted"], choices=list(VARIANTS))
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--steps-per-click", type=int, default=30)
    parser.add_argument("--start-steps", type=int, default=1200)
    parser.add_argument("--lr", type=float, default=LiveSettings.learning_rate)
    parser.add_argument("--anchor", type=float, default=LiveSettings.anchor,
                        help="pull toward the session's starting weights (LiveSettings.anchor)")
    parser.add_argument("--others", type=int, default=3)
    parser.add_argument("--val", type=int, default=6, help="val images loaded (fixed subset)")
    parser.add_argument("--others-every", type=int, default=5)
    parser.add_argument("--image", type=int, default=0,
                        help="corrected val image: 0 = the one with the most mistakes, 1 = next")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=K.DATA)
    parser.add_argument("--start", choices=["10-cell", "shipped"], default="10-cell",
                        help="start of the non-fluorescence kinds: a 10-cell model, or the "
                        "kind's shipped starting model")
    parser.add_argument("--cache", type=Path, help="folder that keeps the 10-cell models")
    parser.add_argument("--paint", action="store_true",
                        help="missed cells are painted exactly (the true mask) instead of "
                        "clicked: what the learning does with a perfect mask")
    parser.add_argument("--shown", choices=["network", "seeded", "annotated"],
                        default="annotated",
                        help="what the simulated user sees and clicks on: the annotations "
                        "winning where they are (what the plugin shows, the default), the "
                        "user's cells only seeding the network's split, or the network's own "
                        "instances; clicked_fixed_by_view reports all three")
    parser.add_argument("--mistakes-png", type=Path,
                        help="draw the largest mistakes of the corrected image's start "
                        "prediction (one kind)")
    parser.add_argument("--masks-only", action="store_true",
                        help="only the add-click masks of every missed object (no training)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="only merge these --json files into --json and draw --png")
    return parser.parse_args()


def run_kind(model: UNet, val: list, kind: K.Kind, args: argparse.Namespace, log) -> dict:
    """Every variant's click sequence on the val image with the most mistakes (``--image``:
    the next ones), per variant."""
    order = sorted(range(len(val)), key=lambda i: -n_mistakes(model, val[i], kind))
    pick = order[min(args.image, len(order) - 1)]
    target, others = val[pick], [v for i, v in enumerate(val) if i != pick]
    log(kind.name, "corrected image", target[0])
    if args.mistakes_png:
        settings = LiveSettings(seed=args.seed, device="cpu")
        draw_mistakes(Session(model, target[1], target[2], kind, settings), target[1],
                      args.mistakes_png)
    return {v: run_variant(model, target, others[: args.others], kind, v, args, log)
            for v in args.variants}


def main() -> None:
    """Parse arguments, run every kind and variant, print and write the figures."""
    args = parse_args()
    if args.merge:
        merged = merge(args.merge)
        if args.json:
            args.json.write_text(json.dumps(merged, indent=1))
        if args.png:
            draw(merged, args.png)
        return
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()}", flush=True)

    def log(*items) -> None:
        print(*items, flush=True)

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "kinds": {}}
    for name in args.kinds:
        kind = K.KINDS[name]
        train = K.load(kind, "train", args.data, None if kind.chosen else 12)
        val = K.load(kind, "val", args.data, args.val)
        t0 = time.perf_counter()
        model = start_model(kind, train, args)
        log(name, "start model", f"{time.perf_counter() - t0:.0f} s")
        if args.masks_only:
            results["kinds"][name] = {"masks": click_masks(model, val, kind)}
            log(name, results["kinds"][name])
        else:
            results["kinds"][name] = run_kind(model, val, kind, args, log)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(f"load average {os.getloadavg()}", flush=True)
    for name, by_variant in results["kinds"].items():
        for variant, r in by_variant.items():
            log(name, variant, {k: v for k, v in r.items() if k != "curve"})
    if args.png and not args.masks_only:
        draw(results, args.png)


if __name__ == "__main__":
    main()
