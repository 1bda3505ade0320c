"""Segmentation metrics: Dice and the 95th-percentile Hausdorff distance (HD95, mm) of label maps.

HD95 is MONAI's :class:`~monai.metrics.HausdorffDistanceMetric` (``percentile=95``, Euclidean, symmetric,
boundary voxels from scipy's erosion and distance transform) with two conventions on top, so that every
value a training log or a report shows is finite:

- a class absent from an image's ground truth gives NaN there (ignored by the reductions, so an image
  only scores the classes it contains);
- a class in the ground truth that the prediction misses entirely scores the image diagonal, the largest
  distance possible on the grid (MONAI would give NaN or inf).

Distances are in mm: ``spacing`` is the voxel size in mm per spatial axis; ``None`` means 1 mm per pixel
(the phantom and the resized datalists carry no spacing, so there HD95 is in pixels).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, compute_hausdorff_distance
from monai.metrics.utils import prepare_spacing
from monai.networks.utils import one_hot

__all__ = ["Spacing", "image_diagonal", "hausdorff_distance_95", "HausdorffDistance95", "segmentation_metrics"]

Spacing = float | Sequence[float] | Sequence[Sequence[float]] | None
"""Voxel size in mm: one number (isotropic), one per spatial axis, one such per image of a batch, or
``None`` (1 mm per pixel); MONAI's ``spacing`` of :func:`~monai.metrics.compute_hausdorff_distance`."""

# MONAI warns for every empty mask; the conventions above handle them
_EMPTY_MASK_WARNING = r"the (ground truth|prediction) of class .* is all 0"


def image_diagonal(spatial_shape: Sequence[int], spacing: Spacing = None, batch_size: int = 1) -> torch.Tensor:
    """The diagonal of each image's grid in mm, (B,): ``sqrt(sum_i (n_i * spacing_i)^2)``."""
    out = []
    for item in prepare_spacing(spacing=spacing, batch_size=batch_size, img_dim=len(spatial_shape)):
        sizes = np.broadcast_to(np.asarray(1.0 if item is None else item, dtype=np.float64), (len(spatial_shape),))
        out.append(math.sqrt(sum((n * s) ** 2 for n, s in zip(spatial_shape, sizes))))
    return torch.tensor(out, dtype=torch.float64)


def hausdorff_distance_95(pred: torch.Tensor, gt: torch.Tensor, spacing: Spacing = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between the boundaries of two binary masks (*S).

    MONAI's :func:`~monai.metrics.compute_hausdorff_distance` with ``percentile=95``; ``spacing`` is the
    voxel size in mm per axis (``None``: 1 mm per pixel). NaN when ``gt`` is empty, ``inf`` when only
    ``pred`` is (the callers decide what these count).
    """
    pred, gt = torch.as_tensor(pred).bool(), torch.as_tensor(gt).bool()
    if not gt.any():
        return float("nan")
    if not pred.any():
        return float("inf")
    distance = compute_hausdorff_distance(
        pred[None, None], gt[None, None], include_background=True, percentile=95.0, spacing=spacing
    )  # (1, 1)
    return float(distance[0, 0])


class HausdorffDistance95(HausdorffDistanceMetric):
    """HD95 in mm of one-hot predictions and labels (B, K, *S), made finite for training logs.

    MONAI's ``HausdorffDistanceMetric(percentile=95)`` with the conventions of the module docstring: NaN
    for a class absent from the ground truth (ignored by :meth:`aggregate`), the image diagonal for a class
    the prediction misses.

    Args:
        include_background: score channel 0 too.
        reduction: a MONAI :class:`~monai.utils.MetricReduction` for :meth:`aggregate` (NaNs ignored).
        spacing: voxel size in mm (see :data:`Spacing`) when a call passes none; ``None``: 1 mm per pixel.
    """

    def __init__(self, include_background: bool = False, reduction: str = "mean", spacing: Spacing = None) -> None:
        super().__init__(include_background=include_background, percentile=95.0, reduction=reduction)
        self.spacing = spacing

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:  # type: ignore[override]
        """(B, K, *S) one-hot pair -> (B, K') distances in mm; ``spacing=`` overrides the constructor's."""
        if y_pred.shape != y.shape or y_pred.ndim < 4:
            raise ValueError(f"expected one-hot y_pred and y of one shape (B, K, *S), got {y_pred.shape}, {y.shape}.")
        spacing = kwargs.get("spacing", self.spacing)
        offset = 0 if self.include_background else 1
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_EMPTY_MASK_WARNING)
            distances = super()._compute_tensor(y_pred, y, spacing=spacing)  # (B, K')
        present = y[:, offset:].flatten(2).any(dim=2)  # (B, K'): the class is in the ground truth
        missed = present & ~y_pred[:, offset:].flatten(2).any(dim=2)  # (B, K'): ... and nowhere in the prediction
        diagonal = image_diagonal(y.shape[2:], spacing, y.shape[0]).to(distances)  # (B,)
        distances = torch.where(missed, diagonal[:, None].expand_as(distances), distances)
        return torch.where(present, distances, torch.full_like(distances, float("nan")))


def _nanmean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def segmentation_metrics(
    pred: torch.Tensor, label: torch.Tensor, class_names: Sequence[str] | None = None, spacing: Spacing = None
) -> dict[str, float]:
    """Dice and HD95 of predicted label maps, every value a finite float.

    Args:
        pred: predicted class ids (N, *S) (an argmax).
        label: ground-truth class ids (N, *S) or (N, 1, *S).
        class_names: names of the class ids (``class_{i}`` for ids without one); the number of classes is
            the larger of ``len(class_names)`` and the largest id + 1.
        spacing: voxel size in mm (see :data:`Spacing`); ``None``: 1 mm per pixel.

    Returns:
        ``dice``: mean over foreground classes of the class's mean Dice over the images that contain it;
        ``dice_<name>``: that per-class Dice (only for classes present in some image); ``hd95``: mean 95th
        percentile Hausdorff distance in mm over (image, present class) pairs, a missed class counting
        the image diagonal; ``pixel_accuracy``: the fraction of pixels labelled right. Without any
        foreground in the ground truth, ``dice`` is 1.0 when nothing is predicted either, else 0.0, and
        ``hd95`` 0.0 or the (mean) image diagonal.
    """
    pred = torch.as_tensor(pred).long()
    label = torch.as_tensor(label).long()
    if label.ndim == pred.ndim + 1:
        label = label[:, 0]
    if pred.shape != label.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and label {tuple(label.shape)} must have the same shape.")
    names = list(class_names or [])
    num_classes = max(len(names), int(pred.max()) + 1, int(label.max()) + 1, 2)
    names += [f"class_{i}" for i in range(len(names), num_classes)]
    p, y = one_hot(pred[:, None], num_classes), one_hot(label[:, None], num_classes)  # (N, K, *S)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(p, y).numpy()  # (N, K-1)
    hd = HausdorffDistance95(include_background=False, reduction="none")(p, y, spacing=spacing).cpu().numpy()
    out: dict[str, float] = {}
    per_class = []
    for k in range(1, num_classes):
        value = _nanmean(dice[:, k - 1])
        if value is not None:
            out[f"dice_{names[k]}"] = value
            per_class.append(value)
    predicted_fg = bool((pred > 0).any())
    diagonal = float(image_diagonal(pred.shape[1:], spacing, pred.shape[0]).mean())
    out["dice"] = float(np.mean(per_class)) if per_class else (0.0 if predicted_fg else 1.0)
    hd95 = _nanmean(hd.ravel())
    out["hd95"] = hd95 if hd95 is not None else (diagonal if predicted_fg else 0.0)
    out["pixel_accuracy"] = float((pred == label).float().mean())
    return out
