"""The losses of training: the U-Net's weighted cross-entropy, and the distillation and
agreement terms that keep a fine-tuned model's own answer where nothing is labeled."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss", "label_agreement", "trust_from", "weighted_cross_entropy"]


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``sum(w * ce) / sum(w)`` over all pixels (0 when no pixel has weight)."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (ce * weights).sum() / weights.sum().clamp_min(1e-8)


def distillation_loss(
    logits: torch.Tensor, teacher_probs: torch.Tensor, unlabeled: torch.Tensor,
    balanced: bool = False,
) -> torch.Tensor:
    """Mean KL(teacher || student) over the ``unlabeled`` pixels (0 when there are none).

    ``balanced``: each class the teacher predicts weighs the same in the mean (the class
    balance of the U-Net loss, applied to the teacher's answer), so that the few cell pixels
    near a removed object hold the cells as firmly as the many background pixels hold the
    background.
    """
    log_student = F.log_softmax(logits.float(), dim=1)
    kl = F.kl_div(log_student, teacher_probs, reduction="none").sum(dim=1)
    mask = unlabeled.to(kl.dtype)
    if balanced:  # each present class sums to 1, so the weights' sum is >= 1 unless empty
        onehot = F.one_hot(teacher_probs.argmax(dim=1), teacher_probs.shape[1]).movedim(-1, 1)
        per_class = onehot.to(kl.dtype) * mask[:, None]
        counts = per_class.sum(dim=(0, 2, 3), keepdim=True)
        mask = (per_class / counts.clamp_min(1.0)).sum(dim=1)
    return (kl * mask).sum() / mask.sum().clamp_min(1.0)


def label_agreement(
    teacher_probs: torch.Tensor, target: torch.Tensor, labeled: torch.Tensor
) -> torch.Tensor:
    """Per class: (sum of the teacher's probability of the labeled class, labeled pixel count).

    Returns a ``(2, n_classes)`` tensor to be summed over batches; see :func:`trust_from`.
    """
    n_classes = teacher_probs.shape[1]
    mask = labeled.to(teacher_probs.dtype)
    onehot = F.one_hot(target, n_classes).movedim(-1, 1).to(teacher_probs.dtype) * mask[:, None]
    return torch.stack([(teacher_probs * onehot).sum(dim=(0, 2, 3)), onehot.sum(dim=(0, 2, 3))])


def trust_from(agreement: torch.Tensor) -> float:
    """``2 a - 1`` clipped to [0, 1], ``a`` the worst class's mean agreement (0.5 = chance)."""
    sums, counts = agreement
    present = counts > 0
    if not bool(present.any()):
        return 0.0
    worst = float((sums[present] / counts[present]).min())
    return min(max(2.0 * worst - 1.0, 0.0), 1.0)
