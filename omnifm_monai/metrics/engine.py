"""Adapters between a MONAI engine's decollated output and the ignite metrics of the bundles' evaluators.

MONAI engines decollate each batch into a list of item dicts (``{"image", "label", "pred", ...}``, each
channel-first without the batch axis). The ``*_from_engine`` functions are ignite ``output_transform``s
that turn that list into what a metric needs; :class:`QabfMetric` is an ignite metric of its own.
A bundle names them in its ``train.json`` (``"$omnifm_monai.metrics.multiclass_from_engine"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers import from_engine

from omnifm_monai.metrics.fusion import baseline_fusion, qabf

__all__ = ["multiclass_from_engine", "bicubic_from_engine", "ssim_pairs_from_engine", "QabfMetric"]


def multiclass_from_engine(output) -> tuple:
    """Ignite ``output_transform`` for multi-class metrics in a bundle.

    MONAI engines decollate the batch into a list of ``{"pred": (C,), "label": (C,) one-hot}``;
    ignite's ``Accuracy``/``Fbeta`` need ``(y_pred (B, C), y (B,))`` to count samples rather
    than one-hot entries.
    """
    items = output if isinstance(output, (list, tuple)) else [output]
    pred = torch.stack([torch.as_tensor(o["pred"]) for o in items])  # (B, C)
    label = torch.stack([torch.as_tensor(o["label"]).reshape(-1) for o in items])  # (B, C) or (B, 1)
    return pred, (label.argmax(dim=1) if label.shape[1] > 1 else label[:, 0].long())


def bicubic_from_engine(scale: int) -> Callable:
    """An ignite ``output_transform``: the bicubic upsampling of each LR input and its HR label.

    Lets a bundle's evaluator report the interpolation floor next to the network's metrics.
    """
    # imported here: metrics sit below networks (networks import losses, losses import metrics)
    from omnifm_monai.networks.omnifm_super_resolution import bicubic_upsample

    def transform(output: list[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        preds = [bicubic_upsample(d["image"][None].float(), scale)[0].clamp(0.0, 1.0) for d in output]
        return preds, [d["label"] for d in output]

    return transform


def ssim_pairs_from_engine(output: list[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """An ignite ``output_transform`` for MONAI's ``SSIMMetric``: each ``pred`` (1, *S) repeated over the
    sources' channels, and ``label`` (2, *S), so the channel-averaged SSIM is ``(SSIM(F, A) + SSIM(F, B)) / 2``."""
    preds = [torch.as_tensor(d["pred"]).clamp(0.0, 1.0).expand_as(torch.as_tensor(d["label"])) for d in output]
    return preds, [torch.as_tensor(d["label"]) for d in output]


def _stack(values: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    return values if isinstance(values, torch.Tensor) else torch.stack([torch.as_tensor(v) for v in values])


class QabfMetric(Metric):
    """Qabf as an ignite metric for a MONAI evaluator: batch items ``pred`` (1, H, W) and ``label`` (2, H, W).

    Args:
        baseline: ``None`` scores the network's ``pred``; ``"average"`` or ``"max"`` scores that pixel-wise
            fusion of the sources instead (the floor a learned fusion should beat).
        output_transform: engine output -> ``(preds, labels)``; MONAI's decollated batch by default.
    """

    def __init__(
        self,
        baseline: str | None = None,
        output_transform: Callable = from_engine(["pred", "label"]),  # noqa: B008
        device: str | torch.device = "cpu",
    ) -> None:
        if baseline not in (None, "average", "max"):
            raise ValueError(f"baseline={baseline!r} must be None, 'average' or 'max'.")
        self.baseline = baseline
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum, self._count = 0.0, 0

    @reinit__is_reduced
    def update(self, output) -> None:
        preds, labels = (_stack(o).detach().float().cpu() for o in output)  # (B, 1, H, W), (B, 2, H, W)
        fused = preds if self.baseline is None else baseline_fusion(labels, self.baseline)
        values = qabf(fused.clamp(0.0, 1.0), labels[:, :1], labels[:, 1:2])  # (B,)
        self._sum += float(values.sum())
        self._count += int(values.numel())

    @sync_all_reduce("_sum", "_count")  # summed over the processes of a multi-GPU (DDP) validation
    def compute(self) -> float:
        if self._count == 0:
            raise RuntimeError("QabfMetric needs at least one update before compute().")
        return self._sum / self._count
