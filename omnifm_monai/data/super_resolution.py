"""Super-resolution data: the seeded degradation, HR/LR datalists, site archives, federations and SR file I/O.

Degradation (:func:`degrade_bicubic`), the LR input every SR data set derives from its HR images:

1. Gaussian blur of ``blur_sigma`` HR pixels (default ``0.5 * scale``, as :func:`omnifm_monai.data.phantom.degrade`),
   reflect-padded, separable;
2. bicubic downsampling by ``scale`` with PyTorch's anti-aliased ``F.interpolate(mode="bicubic",
   antialias=True)`` (3D volumes: area averaging, PyTorch has no 3D anti-aliased bicubic);
3. additive Gaussian noise of ``noise_std`` (default 0.01) from ``numpy.random.default_rng(seed)``;
4. clip to [0, 1], float32.

Same images, scale and seed give the same LR images, bit for bit.

Sources (:func:`load_super_resolution_split`), each giving ``[{"image": LR float32 (C, S/scale, S/scale),
"label": HR float32 (C, S, S)}]`` in [0, 1]:

- ``None`` / ``""`` / ``"phantom"``: ``num_samples`` phantom HR images over all seven modalities (pathology
  RGB, the others gray), shuffled with ``seed`` and split 60/20/20;
- a site ``.npz`` written by :meth:`SuperResolutionData.save_npz` (uint8 HR images per split);
- a folder of PNG/JPEG/TIFF/BMP or NIfTI (middle slice) or DICOM images, laid out ``<dir>/<split>/...``
  (searched recursively) or flat (every file below the folder, split 60/20/20 by a seeded permutation of
  the sorted file list). Each image is scaled to [0, 1] (min-max, the classification readers), centre
  cropped to a square and resized (area) to ``image_size``. Unreadable files are logged and skipped.

Channels: sites store images in their native channel count (gray ``(N, S, S)``, RGB ``(N, S, S, 3)``,
MedMNIST-like); the loader converts at load time to the bundle's ``in_channels`` (gray repeated to 3, RGB
averaged to 1), so one bundle serves gray and pathology sites.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

from omnifm_monai.data.classification import (
    fix_channels,
    image_reader_kind,
    resize_images,
    shared_image_reader,
)
from omnifm_monai.data.medmnist import SPLITS
from omnifm_monai.data.phantom import MODALITIES, make_phantom_dataset
from omnifm_monai.data.site_archive import (
    SiteLookup,
    archive_text,
    is_phantom,
    load_site_archive,
    markdown_table,
    phantom_site_samples,
    save_site_archive,
    split_cuts,
)

__all__ = [
    "SR_SCENARIOS",
    "SPLIT_FRACTIONS",
    "degrade_bicubic",
    "SuperResolutionData",
    "load_super_resolution_npz",
    "load_super_resolution_split",
    "SuperResolutionFederation",
    "build_super_resolution_federation",
    "super_resolution_inference_datalist",
    "SuperResolutionWriter",
]

logger = logging.getLogger(__name__)

SR_SCENARIOS: tuple[str, ...] = ("cross_modality_hard", "iid")
"""Partition scenarios :func:`build_super_resolution_federation` knows."""

SPLIT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
"""Train/val/test fractions of the phantom, of flat folders and of each federated site."""

_DEFAULT_SITE_SAMPLES = 160
_NPZ_KIND = "super_resolution"


# ---- degradation ----------------------------------------------------------------------------------------


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()  # (2 * radius + 1,)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of x (N, C, *S), reflect padding (replicate where an axis is too short)."""
    if sigma <= 0:
        return x
    kernel = _gaussian_kernel(sigma)
    radius = kernel.numel() // 2
    n, c, *spatial = x.shape
    out = x.reshape(n * c, 1, *spatial)  # every (image, channel) as one channel
    for axis in range(len(spatial)):
        shape = [1, 1] + [1] * len(spatial)
        shape[2 + axis] = kernel.numel()
        pad = [0, 0] * len(spatial)
        pad[2 * (len(spatial) - 1 - axis)] = pad[2 * (len(spatial) - 1 - axis) + 1] = radius
        mode = "reflect" if min(spatial) > radius else "replicate"
        padded = F.pad(out, pad, mode=mode)
        conv = F.conv2d if len(spatial) == 2 else F.conv3d
        out = conv(padded, kernel.reshape(shape))
    return out.reshape(n, c, *spatial)


def degrade_bicubic(
    images: np.ndarray | torch.Tensor,
    scale: int,
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
    noise_std: float = 0.01,
) -> np.ndarray:
    """LR images from HR images: Gaussian blur, bicubic (anti-aliased) downsampling, Gaussian noise, clip.

    Args:
        images: float HR images (N, C, H, W) or (N, C, D, H, W) in [0, 1]; every spatial size divisible by
            ``scale``.
        scale: integer downsampling factor (>= 1).
        seed: seed of the noise (any non-negative int or sequence numpy accepts).
        blur_sigma: Gaussian sigma in HR pixels (>= 0); ``None`` for ``0.5 * scale``.
        noise_std: standard deviation of the noise (>= 0).

    Returns:
        float32 (N, C, *S // scale) in [0, 1].

    Raises:
        ValueError: for a bad shape or argument (the message names it).
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim not in (4, 5):
        raise ValueError(f"images.shape={tuple(x.shape)} must be (N, C, H, W) or (N, C, D, H, W).")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale={scale!r} must be an integer >= 1.")
    scale = int(scale)
    if any(s % scale for s in x.shape[2:]):
        raise ValueError(f"scale={scale} must divide every spatial size of images.shape={tuple(x.shape)}.")
    sigma = 0.5 * scale if blur_sigma is None else float(blur_sigma)
    if not sigma >= 0:
        raise ValueError(f"blur_sigma={blur_sigma!r} must be >= 0.")
    if not float(noise_std) >= 0:
        raise ValueError(f"noise_std={noise_std!r} must be >= 0.")
    size = [s // scale for s in x.shape[2:]]
    with torch.no_grad():
        blurred = _blur(x, sigma)  # (N, C, *S)
        if scale == 1:
            low = blurred
        elif x.ndim == 4:
            low = F.interpolate(blurred, size=size, mode="bicubic", antialias=True, align_corners=False)
        else:
            low = F.interpolate(blurred, size=size, mode="area")  # (N, C, *S / scale)
    out = low.numpy()
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        out = out + rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise_std)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


# ---- site archives --------------------------------------------------------------------------------------


@dataclass
class SuperResolutionData:
    """HR images of one data set or site, per split (LR images are derived on load).

    Args:
        name: data set or site name, e.g. ``"site-3"``.
        modality: imaging modality, e.g. ``"CT"``; several joined by ``"+"``.
        splits: ``"train"``/``"val"``/``"test"`` -> uint8 HR images ``(N, S, S)`` (gray) or
            ``(N, S, S, 3)`` (RGB).
        source: where the images came from (``"phantom"``, a folder), for summaries only.

    Raises:
        ValueError: for an unknown split or a bad image array.
    """

    name: str
    modality: str
    splits: dict[str, np.ndarray] = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"{self.name}: unknown split(s) {sorted(unknown)}; expected keys from {SPLITS}.")
        for split, images in self.splits.items():
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
                raise ValueError(
                    f"{self.name}: {split} images are {images.dtype} {images.shape}; expected uint8 (N, S, S) "
                    "or (N, S, S, 3)."
                )

    @property
    def num_channels(self) -> int:
        """1 for gray images, 3 for RGB."""
        return 3 if next(iter(self.splits.values())).ndim == 4 else 1

    def num_samples(self, split: str) -> int:
        """Images in ``split`` (0 when absent)."""
        return int(self.splits[split].shape[0]) if split in self.splits else 0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write a compressed ``.npz`` (keys ``{split}_images``, ``name``, ``modality``, ``source``, ``kind``)."""
        # uint8 (N, S, S) or (N, S, S, 3) per split
        arrays = {f"{s}_images": np.ascontiguousarray(x, dtype=np.uint8) for s, x in self.splits.items()}
        texts = {"name": self.name, "modality": self.modality, "source": self.source, "kind": _NPZ_KIND}
        save_site_archive(path, arrays, texts)


def load_super_resolution_npz(path: str | os.PathLike) -> SuperResolutionData:
    """Read a :meth:`SuperResolutionData.save_npz` archive (a MedMNIST ``.npz`` works too: its images are HR).

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when it is not a readable ``.npz`` or holds no ``{split}_images`` (the message names it).
    """
    path = Path(path).expanduser()
    arrays = load_site_archive(path)
    splits = {s: arrays[f"{s}_images"] for s in SPLITS if f"{s}_images" in arrays}
    if not splits:
        raise ValueError(f"'{path}' holds none of the keys {[f'{s}_images' for s in SPLITS]}.")
    splits = {s: (x if x.dtype == np.uint8 else np.clip(x, 0, 255).astype(np.uint8)) for s, x in splits.items()}
    return SuperResolutionData(
        name=archive_text(arrays, "name", path.stem),
        modality=archive_text(arrays, "modality", ""),
        splits=splits,
        source=archive_text(arrays, "source", path.name),
    )


# ---- datalists ------------------------------------------------------------------------------------------


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """float (N, C, S, S) in [0, 1] -> uint8 (N, S, S) or (N, S, S, 3)."""
    x = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)


def _from_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S) or (N, S, S, 3) -> float32 (N, C, S, S) in [0, 1]."""
    x = images.astype(np.float32) / 255.0
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


@functools.lru_cache(maxsize=4)
def _phantom_hr(image_size: int, in_channels: int, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """HR phantom images of every modality, shuffled and split 60/20/20: split -> float32 (N, C, S, S)."""
    if num_samples < 5:
        raise ValueError(f"num_samples={num_samples} must be >= 5 so that train, val and test are non-empty.")
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(MODALITIES))]
    images = []
    for m, (modality, n) in enumerate(zip(MODALITIES, counts)):
        if n:
            ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=2, seed=seed * 97 + m)
            images.append(fix_channels(np.asarray(ds.images, dtype=np.float32), in_channels))
    order = np.random.default_rng([seed, 0x5E]).permutation(num_samples)
    parts = np.split(np.concatenate(images)[order], split_cuts(num_samples, SPLIT_FRACTIONS[:2]))
    return dict(zip(SPLITS, parts))


def _square(image: np.ndarray) -> np.ndarray:
    """Centre crop of (C, H, W) to (C, m, m), ``m = min(H, W)``."""
    _, h, w = image.shape
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    return image[:, top : top + m, left : left + m]


def _read_hr(path: Path, image_size: int, in_channels: int) -> np.ndarray | None:
    """One file as float32 HR (in_channels, S, S), or None after a warning naming it and the reason."""
    kind = image_reader_kind(path)
    if kind is None:
        logger.warning("Skipping '%s': not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.", path)
        return None
    try:
        image = shared_image_reader()(path, kind)  # (C, H, W) in [0, 1]
    except Exception as e:  # one bad file must not stop the data set
        logger.warning("Skipping unreadable image '%s' (%s reader): %s: %s", path, kind, type(e).__name__, e)
        return None
    return fix_channels(resize_images(_square(image)[None], image_size), in_channels)[0]


def _files_below(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not any(q.startswith(".") for q in p.relative_to(folder).parts)
    )


def _folder_hr(folder: Path, split: str, image_size: int, in_channels: int, seed: int) -> np.ndarray:
    """HR images (N, C, S, S) of one split of a folder (``<dir>/<split>/...`` or flat, seeded split)."""
    if any((folder / s).is_dir() for s in SPLITS):
        files = _files_below(folder / split) if (folder / split).is_dir() else []
        where = folder / split
    else:
        every = _files_below(folder)
        order = np.random.default_rng([seed, 0xF1]).permutation(len(every))
        files = [
            every[i] for i in sorted(np.split(order, split_cuts(len(every), SPLIT_FRACTIONS[:2]))[SPLITS.index(split)])
        ]
        where = folder
    images = [x for x in (_read_hr(p, image_size, in_channels) for p in files) if x is not None]
    if not images:
        raise ValueError(
            f"'{where}' holds no readable image for split {split!r} ({len(files)} file(s) tried); expected "
            "PNG/JPEG/TIFF/BMP, NIfTI or DICOM files in <dir>/<split>/ or directly below <dir>."
        )
    return np.stack(images)


def load_super_resolution_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    in_channels: int = 3,
    scale: int = 2,
    num_samples: int = 420,
    seed: int = 0,
) -> list[dict]:
    """The datalist of one split for the super-resolution bundle.

    Args:
        dataset_dir: ``None``/``""``/``"phantom"``, a site ``.npz`` (:meth:`SuperResolutionData.save_npz`)
            or a folder of image files (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: HR size (square), divisible by ``scale``.
        in_channels: 1 or 3.
        scale: downsampling factor of the LR input.
        num_samples: phantom only: images over all three splits (60/20/20).
        seed: phantom images and split, flat-folder split and the degradation noise.

    Returns:
        ``[{"image": float32 LR (C, S/scale, S/scale), "label": float32 HR (C, S, S)}]``, both in [0, 1].

    Raises:
        ValueError: for a bad argument or a source without readable images (the message names it).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels} is not supported; expected 1 (gray) or 3 (RGB).")
    if scale < 1 or image_size < scale or image_size % scale:
        raise ValueError(f"image_size={image_size} must be a positive multiple of scale={scale}.")
    if is_phantom(dataset_dir):
        hr = _phantom_hr(image_size, in_channels, num_samples, seed)[split]
    else:
        path = Path(dataset_dir).expanduser()
        if path.is_dir():
            hr = _folder_hr(path, split, image_size, in_channels, seed)
        elif path.is_file() and path.name.lower().endswith(".npz"):
            data = load_super_resolution_npz(path)
            if split not in data.splits or not data.num_samples(split):
                raise ValueError(f"'{path}' has no {split!r} images.")
            hr = fix_channels(resize_images(_from_uint8(data.splits[split]), image_size), in_channels)
        elif path.is_file():
            raise ValueError(f"dataset_dir '{path}' is a file but not a .npz archive.")
        else:
            raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")
    hr = np.ascontiguousarray(hr, dtype=np.float32)  # (N, C, S, S)
    lr = degrade_bicubic(hr, scale, seed=[seed, SPLITS.index(split)])  # (N, C, S/scale, S/scale)
    return [{"image": x, "label": y} for x, y in zip(lr, hr)]


# ---- federation -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuperResolutionFederation(SiteLookup[SuperResolutionData]):
    """Simulated SR federation: one :class:`SuperResolutionData` per site (``site-1`` .. ``site-N``)."""

    scenario: str
    seed: int
    clients: tuple[SuperResolutionData, ...]

    @property
    def num_classes(self) -> int:
        """0: super-resolution has no label space."""
        return 0

    def summary(self) -> str:
        """A Markdown table: site, modality, channels, HR size, train/val/test counts."""
        headers = ("site", "modality", "channels", "HR size", "train/val/test")
        rows = [
            (
                c.name,
                c.modality,
                str(c.num_channels),
                "x".join(str(s) for s in next(iter(c.splits.values())).shape[1:3]),
                "/".join(str(c.num_samples(s)) for s in SPLITS),
            )
            for c in self.clients
        ]
        title = f"Super-resolution federation '{self.scenario}' (seed {self.seed}): {self.num_clients} sites"
        return f"{title}\n\n{markdown_table(headers, rows)}"


def build_super_resolution_federation(
    scenario: str,
    num_clients: int,
    *,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    image_size: int = 64,
    samples_per_client: int | None = None,
) -> SuperResolutionFederation:
    """A phantom SR federation: HR images per site, split 60/20/20 (seeded).

    ``cross_modality_hard``: site ``i`` (0-based) holds modality ``MODALITIES[i % 7]`` only; ``iid``: every
    site holds every modality in equal shares (RGB then, gray repeated). Gray sites store (N, S, S), pathology
    sites (N, S, S, 3); the loader converts to the bundle's ``in_channels``.

    Args:
        scenario: one of :data:`SR_SCENARIOS`.
        num_clients: sites, >= 1.
        seed: seeds every phantom and split.
        data_dir: must be ``None`` (or ``""``/``"phantom"``): SR federations are built from the phantom.
        image_size: HR size.
        samples_per_client: images per site before the split (``None`` -> 160, minimum 5).

    Raises:
        ValueError: for an unknown scenario, a bad count or a ``data_dir``.
    """
    samples = phantom_site_samples(
        "super-resolution", scenario, SR_SCENARIOS, num_clients, image_size, samples_per_client,
        _DEFAULT_SITE_SAMPLES, data_dir, "folder or .npz",
    )  # fmt: skip
    clients = []
    for i in range(num_clients):
        held = (MODALITIES[i % len(MODALITIES)],) if scenario == "cross_modality_hard" else MODALITIES
        counts = [len(c) for c in np.array_split(np.arange(samples), len(held))]
        parts = []
        for modality, n in zip(held, counts):
            if n:
                site_seed = int(np.random.default_rng([seed, i, MODALITIES.index(modality)]).integers(2**31 - 1))
                ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=2, seed=site_seed)
                parts.append(np.asarray(ds.images, dtype=np.float32))  # (n, C, S, S)
        if len({x.shape[1] for x in parts}) > 1:
            parts = [np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x for x in parts]  # mixed -> RGB
        images = _to_uint8(np.concatenate(parts))
        order = np.random.default_rng([seed, i, 0x5A]).permutation(samples)
        splits = {
            s: images[np.sort(idx)] for s, idx in zip(SPLITS, np.split(order, split_cuts(samples, SPLIT_FRACTIONS[:2])))
        }
        clients.append(SuperResolutionData(f"site-{i + 1}", "+".join(held), splits, source="phantom"))
    return SuperResolutionFederation(scenario=scenario, seed=seed, clients=tuple(clients))


# ---- inference I/O --------------------------------------------------------------------------------------


def _read_for_inference(path: Path, in_channels: int) -> list[dict]:
    """One file -> one item per 2D image (a NIfTI volume gives one per slice along its last axis)."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        nii = nib.load(str(path))
        data = np.asarray(nii.get_fdata(dtype=np.float32))
        if data.ndim == 4 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim == 2:
            data = data[..., None]
        if data.ndim != 3 or not np.isfinite(data).all():
            raise ValueError(f"expected a finite 2D image or 3D volume, got shape {data.shape}")
        low, high = float(data.min()), float(data.max())
        norm = (data - low) / (high - low) if high > low else np.zeros_like(data)
        meta = {
            "filename": str(path),
            "kind": "nifti",
            "affine": nii.affine.astype(np.float64),
            "range": np.array([low, high]),
        }
        slices = [norm[None, ..., k] for k in range(norm.shape[-1])]  # (1, X, Y) each
        return [
            {"image": fix_channels(s[None], in_channels)[0], "slice": k, "num_slices": len(slices), **meta}
            for k, s in enumerate(slices)
        ]
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        rgb = im.mode not in ("1", "L", "I", "I;16", "F", "LA")
        arr = np.asarray(im.convert("RGB" if rgb else "F"), dtype=np.float32)
    peak = 255.0 if rgb or arr.max() <= 255 else 65535.0
    image = (arr / peak).transpose(2, 0, 1) if rgb else (arr / peak)[None]  # (C, H, W) in [0, 1]
    meta = {"filename": str(path), "kind": "png", "channels": 3 if rgb else 1, "slice": 0, "num_slices": 1}
    return [{"image": fix_channels(np.clip(image, 0, 1)[None], in_channels)[0].astype(np.float32), **meta}]


def super_resolution_inference_datalist(
    input_path: str | os.PathLike, *, in_channels: int = 3
) -> tuple[list[dict], list[dict]]:
    """The LR images to super-resolve, at their own size (run them with batch size 1).

    Args:
        input_path: a PNG/JPEG/TIFF/BMP or NIfTI file, or a folder searched recursively for them.
        in_channels: the network's channels.

    Returns:
        ``(items, skipped)``: items ``{"image": float32 (C, H, W) in [0, 1], "filename", "kind", "slice",
        "num_slices", ...}`` (NIfTI: one per slice, with ``affine`` and the intensity ``range``);
        skipped ``{"filename", "reason"}`` (each also logged as a warning).

    Raises:
        ValueError: when no file could be read.
    """
    from omnifm_monai.inference import find_input_files

    items, skipped = [], []
    files = find_input_files(input_path)
    for file in files:
        try:
            if image_reader_kind(file) not in ("pil", "nibabel"):
                raise ValueError("not a PNG/JPEG/TIFF/BMP or NIfTI file")
            items += _read_for_inference(file, in_channels)
        except Exception as e:  # any failure of one file must not stop the others
            logger.warning("Skipping '%s': %s: %s", file, type(e).__name__, e)
            skipped.append({"filename": str(file), "reason": f"{type(e).__name__}: {e}"})
    if not items:
        raise ValueError(
            f"no readable image in '{input_path}': {len(files)} file(s) found, {len(skipped)} skipped "
            "(expected PNG/JPEG/TIFF/BMP or NIfTI files)."
        )
    return items, skipped


def _output_name(filename: str, kind: str) -> str:
    name = Path(filename).name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)] + "_sr" + ext
    return Path(name).stem + "_sr.png"


def _scaled_affine(affine: np.ndarray, scale: int) -> np.ndarray:
    """In-plane (first two voxel axes) spacing divided by ``scale``, voxel centres kept on the same grid."""
    out = np.array(affine, dtype=np.float64)
    for axis in (0, 1):
        out[:3, 3] += out[:3, axis] * (1.0 / scale - 1.0) / 2.0  # centre of the first HR voxel
        out[:3, axis] /= scale
    return out


class SuperResolutionWriter:
    """Ignite handler: writes each super-resolved image into ``output_dir`` when the evaluator's epoch ends.

    PNG (and other PIL) inputs are written as 8-bit PNG ``<stem>_sr.png`` (gray if the input was gray);
    NIfTI inputs as ``<name>_sr.nii.gz`` with every slice super-resolved in-plane, the intensities mapped back
    to the input's range and the affine's in-plane spacing divided by ``scale``. ``skipped`` (from
    :func:`super_resolution_inference_datalist`) is written to ``skipped.csv``.
    """

    def __init__(self, output_dir: str | os.PathLike, scale: int, skipped: Sequence[dict] = ()) -> None:
        self.output_dir, self.scale, self.skipped = Path(output_dir), int(scale), list(skipped)
        self._slices: dict[str, dict] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):  # decollated: one dict per image
            pred = output["pred"].detach().float().cpu().clamp(0, 1).numpy()  # (C, H * scale, W * scale)
            entry = self._slices.setdefault(item["filename"], {"item": item, "slices": {}})
            entry["slices"][int(item["slice"])] = pred

    def _write(self, engine: Engine) -> None:
        import csv

        import nibabel as nib
        from PIL import Image

        self.output_dir.mkdir(parents=True, exist_ok=True)
        for filename, entry in self._slices.items():
            item, slices = entry["item"], entry["slices"]
            out = self.output_dir / _output_name(filename, item["kind"])
            if item["kind"] == "nifti":
                low, high = (float(v) for v in item["range"])
                volume = np.stack([slices[k].mean(axis=0) for k in sorted(slices)], axis=-1)  # (X', Y', Z)
                volume = volume * (high - low) + low
                affine = _scaled_affine(np.asarray(item["affine"]), self.scale)
                nib.save(nib.Nifti1Image(volume.astype(np.float32), affine), str(out))
            else:
                image = slices[0]  # (C, H', W')
                image = image.mean(axis=0) if int(item["channels"]) == 1 else image[:3].transpose(1, 2, 0)
                Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(out)
            logger.info("Wrote '%s'.", out)
        with (self.output_dir / "skipped.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "reason"])
            writer.writeheader()
            writer.writerows({"file": s["filename"], "reason": s["reason"]} for s in self.skipped)
        self._slices = {}
