"""Segmentation in the federated pipeline: the phantom federation and per-site Dice / HD95."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.metrics import CumulativeIterationMetric, DiceMetric
from monai.metrics.utils import do_metric_reduction
from monai.networks.utils import one_hot
from torch import nn

from omnifm_monai.tasks.base import FederatedTask
from omnifm_monai.tasks.classification import predict_in_batches, stack_images

__all__ = ["SegmentationTask", "HausdorffDistance95", "hausdorff_distance_95", "segmentation_metrics"]


def _edges(mask: torch.Tensor) -> torch.Tensor:
    """Boundary of a binary mask (*S): the mask minus its 3x3(x3) erosion (outside the grid counts as empty)."""
    d = mask.ndim
    x = (~mask).float()[None, None]  # (1, 1, *S), 1 outside the mask
    pool = torch.nn.functional.max_pool2d if d == 2 else torch.nn.functional.max_pool3d
    outside_near = pool(torch.nn.functional.pad(x, (1, 1) * d, value=1.0), kernel_size=3, stride=1)[0, 0]
    return mask & (outside_near > 0)


def _directed_quantile(a: torch.Tensor, b: torch.Tensor, q: float, max_queries: int = 1024, chunk: int = 1024):
    """q-quantile over points a (n, d) of the distance to the nearest point of b (m, d).

    More than ``max_queries`` query points are thinned to an evenly strided subset (an estimate of the
    quantile; exact for up to ``max_queries`` boundary points, which covers clean masks at 64 x 64).
    """
    if len(a) > max_queries:
        a = a[torch.linspace(0, len(a) - 1, max_queries).long()]
    nearest = torch.cat([torch.cdist(a[i : i + chunk], b).min(dim=1).values for i in range(0, len(a), chunk)])
    return torch.quantile(nearest, q)


def hausdorff_distance_95(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Symmetric 95th-percentile Hausdorff distance (pixels) between the boundaries of two binary masks (*S).

    NaN when ``gt`` is empty, ``inf`` when only ``pred`` is (the callers decide what these count).
    Computed in torch (boundary points, nearest distances), so scipy is not needed.
    """
    pred, gt = torch.as_tensor(pred).bool(), torch.as_tensor(gt).bool()
    if not gt.any():
        return float("nan")
    if not pred.any():
        return float("inf")
    a = torch.nonzero(_edges(pred)).float()  # (n, d)
    b = torch.nonzero(_edges(gt)).float()  # (m, d)
    return float(torch.maximum(_directed_quantile(a, b, 0.95), _directed_quantile(b, a, 0.95)))


class HausdorffDistance95(CumulativeIterationMetric):
    """HD95 in pixels/voxels of one-hot predictions and labels (B, K, *S), made finite for training logs.

    MONAI's ``HausdorffDistanceMetric`` needs scipy, which this project does not depend on; this is the
    same definition (max of the two directed 95th percentiles of boundary distances), computed in torch.

    - a class absent from an image's ground truth gives NaN there (ignored by the reduction, so an image
      only scores the classes it contains);
    - a class in the ground truth the prediction misses entirely scores the image diagonal, the largest
      distance possible on the grid.

    Args:
        include_background: score channel 0 too.
        reduction: a MONAI :class:`~monai.utils.MetricReduction` for :meth:`aggregate` (NaNs ignored).
    """

    def __init__(self, include_background: bool = False, reduction: str = "mean") -> None:
        super().__init__()
        self.include_background, self.reduction = include_background, reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:  # type: ignore[override]
        """(B, K, *S) one-hot pair -> (B, K') distances."""
        if y_pred.shape != y.shape or y_pred.ndim < 4:
            raise ValueError(f"expected one-hot y_pred and y of one shape (B, K, *S), got {y_pred.shape}, {y.shape}.")
        offset = 0 if self.include_background else 1
        diagonal = math.sqrt(sum(s**2 for s in y.shape[2:]))
        out = torch.empty(y.shape[0], y.shape[1] - offset)
        for b, k in np.ndindex(*out.shape):
            out[b, k] = hausdorff_distance_95(y_pred[b, k + offset].cpu(), y[b, k + offset].cpu())
        return out.clamp(max=diagonal)  # inf (missed class) -> diagonal; NaN stays

    def aggregate(self, reduction: str | None = None):
        """Reduce the buffered (N, K') distances (NaN ignored)."""
        values, _ = do_metric_reduction(self.get_buffer(), reduction or self.reduction)
        return values


def _nanmean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def segmentation_metrics(
    pred: torch.Tensor, label: torch.Tensor, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Dice and HD95 of predicted label maps, every value a finite float.

    Args:
        pred: predicted class ids (N, *S) (an argmax).
        label: ground-truth class ids (N, *S) or (N, 1, *S).
        class_names: names of the class ids (``class_{i}`` for ids without one); the number of classes is
            the larger of ``len(class_names)`` and the largest id + 1.

    Returns:
        ``dice``: mean over foreground classes of the class's mean Dice over the images that contain it;
        ``dice_<name>``: that per-class Dice (only for classes present in some image); ``hd95``: mean 95th
        percentile Hausdorff distance in pixels over (image, present class) pairs, a missed class counting
        the image diagonal; ``pixel_accuracy``: the fraction of pixels labelled right. Without any
        foreground in the ground truth, ``dice`` is 1.0 when nothing is predicted either, else 0.0, and
        ``hd95`` 0.0 or the diagonal.
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
    hd = HausdorffDistance95(include_background=False, reduction="none")(p, y).numpy()
    out: dict[str, float] = {}
    per_class = []
    for k in range(1, num_classes):
        value = _nanmean(dice[:, k - 1])
        if value is not None:
            out[f"dice_{names[k]}"] = value
            per_class.append(value)
    predicted_fg = bool((pred > 0).any())
    diagonal = math.sqrt(sum(s**2 for s in pred.shape[1:]))
    out["dice"] = float(np.mean(per_class)) if per_class else (0.0 if predicted_fg else 1.0)
    hd95 = _nanmean(hd.ravel())
    out["hd95"] = hd95 if hd95 is not None else (diagonal if predicted_fg else 0.0)
    out["pixel_accuracy"] = float((pred == label).float().mean())
    return out


class SegmentationTask(FederatedTask):
    """Semantic segmentation (``bundles/omnifm_segmentation``)."""

    name = "segmentation"
    bundle = "omnifm_segmentation"
    headline_metric = "dice"
    report_metrics = ("dice", "hd95", "pixel_accuracy")
    uses_num_classes = True

    def build_federation(self, scenario, num_clients, *, seed, data_dir, image_size, samples_per_client):
        from omnifm_monai.data.federation import build_segmentation_federation

        return build_segmentation_federation(
            scenario,
            num_clients,
            seed=seed,
            data_dir=data_dir or None,
            image_size=image_size,
            samples_per_client=samples_per_client or None,
        )

    def test_evaluator(self, dataset_dir: str, parser: ConfigParser) -> Callable[[nn.Module], dict[str, float]]:
        """:func:`segmentation_metrics` of the network's argmax on the site's test split."""
        from omnifm_monai.data.segmentation import load_segmentation_split, segmentation_class_names

        keys = ("image_size", "in_channels", "spatial_dims", "num_samples", "seed", "num_classes")
        image_size, in_channels, spatial_dims, num_samples, seed, num_classes = (
            parser.get_parsed_content(k) for k in keys
        )
        items = load_segmentation_split(
            dataset_dir,
            "test",
            image_size=image_size,
            in_channels=in_channels,
            spatial_dims=spatial_dims,
            num_samples=num_samples,
            seed=seed,
        )
        images = stack_images(items)  # (N, C, *S), stacked once and reused every round
        labels = torch.as_tensor(np.stack([d["label"][0] for d in items]))  # (N, *S)
        names = list(segmentation_class_names(dataset_dir))[:num_classes]

        def evaluate(network: nn.Module) -> dict[str, float]:
            logits = predict_in_batches(network, images, batch_size=32)  # (N, K, *S)
            return segmentation_metrics(logits.argmax(dim=1), labels, names)

        return evaluate
