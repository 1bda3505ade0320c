"""What the tasks take from the phantom: labelled images, co-registered pairs and HR -> LR degradation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from omnifm_monai.data.degradation import degrade_bicubic
from omnifm_monai.data.phantom.anatomy import PhantomAnatomy, generate_anatomy
from omnifm_monai.data.phantom.properties import _check_int, _check_modality
from omnifm_monai.data.phantom.scanners import render

__all__ = ["PhantomDataset", "make_phantom_dataset", "make_coregistered_pair", "degrade"]


@dataclass(frozen=True)
class PhantomDataset:
    """Images of one modality with their classification and segmentation ground truth.

    Attributes:
        images: float32 ``(N, C, *S)`` in [0, 1]; ``C`` is 3 for ``"PATHOLOGY"``, else 1.
        labels: int64 ``(N,)`` finding id (index in :data:`FINDINGS`).
        masks: int64 ``(N, *S)`` segmentation target: 0 background, ``1..k`` organs, last (6) lesion;
            the values index :data:`TISSUES`.
        modality: one of :data:`MODALITIES`.
        anatomy: the ground truth the images were rendered from (VQA, co-registration, lesion geometry).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    modality: str
    anatomy: PhantomAnatomy | None = field(default=None, repr=False)


def make_phantom_dataset(
    modality: str,
    num_samples: int,
    *,
    image_size: int = 64,
    spatial_dims: int = 2,
    seed: int = 0,
    findings: Sequence[int] | None = None,
) -> PhantomDataset:
    """Generate anatomies and render them through one modality.

    Args:
        modality: one of :data:`MODALITIES`.
        num_samples: number of images (>= 1).
        image_size: size of every spatial axis (>= 16).
        spatial_dims: 2 or 3.
        seed: seeds both the anatomy and the scanner.
        findings: finding ids that may be drawn (``None``: all of :data:`FINDINGS`).

    Returns:
        a :class:`PhantomDataset`; ``masks`` is the tissue label map.

    Raises:
        ValueError: when an argument is invalid.
    """
    modality = _check_modality(modality)
    anatomy = generate_anatomy(
        num_samples, image_size=image_size, spatial_dims=spatial_dims, seed=seed, findings=findings
    )
    return PhantomDataset(
        images=render(anatomy, modality, seed=seed),
        labels=anatomy.labels,
        masks=anatomy.tissue,
        modality=modality,
        anatomy=anatomy,
    )


def make_coregistered_pair(
    num_samples: int,
    modalities: Sequence[str] = ("MR-T1", "PET"),
    *,
    image_size: int = 64,
    spatial_dims: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, PhantomAnatomy]:
    """The same anatomies rendered through two modalities, voxel-aligned (the fusion task's input).

    Args:
        num_samples: number of anatomies (>= 1).
        modalities: two distinct entries of :data:`MODALITIES`.
        image_size: size of every spatial axis (>= 16).
        spatial_dims: 2 or 3.
        seed: seeds the anatomy and both scanners.

    Returns:
        ``(images_a, images_b, anatomy)`` with ``images_*`` float32 ``(N, C, *S)`` in [0, 1].

    Raises:
        ValueError: when an argument is invalid.
    """
    if isinstance(modalities, str) or len(modalities) != 2:
        raise ValueError(f"modalities={modalities!r} must name exactly two modalities.")
    first, second = (_check_modality(m) for m in modalities)
    if first == second:
        raise ValueError(f"modalities={tuple(modalities)!r} must be two different modalities.")
    anatomy = generate_anatomy(num_samples, image_size=image_size, spatial_dims=spatial_dims, seed=seed)
    return render(anatomy, first, seed=seed), render(anatomy, second, seed=seed), anatomy


def degrade(
    images: np.ndarray,
    scale: int,
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
    noise_std: float = 0.01,
) -> np.ndarray:
    """Low-resolution version of high-resolution images: the SR degradation model with area downsampling.

    :func:`omnifm_monai.data.degradation.degrade_bicubic` with ``downsample="area"``: Gaussian blur with
    ``blur_sigma`` HR pixels (default ``0.5 * scale``), area (box) downsampling by ``scale`` on every
    spatial axis, additive Gaussian noise of ``noise_std``, clip to [0, 1].

    Args:
        images: float ``(N, C, *S)`` HR images, 2 or 3 spatial axes, every axis divisible by ``scale``.
        scale: integer downsampling factor (>= 1).
        seed: non-negative seed of the noise.
        blur_sigma: Gaussian sigma in HR pixels (>= 0); ``None`` for ``0.5 * scale``.
        noise_std: standard deviation of the added noise (>= 0).

    Returns:
        float32 ``(N, C, *S // scale)``.

    Raises:
        ValueError: when an argument is invalid.
    """
    seed = _check_int("seed", seed, 0)
    return degrade_bicubic(
        images, scale, seed=seed, blur_sigma=blur_sigma, noise_std=noise_std, downsample="area"
    )  # (N, C, *S // scale)
