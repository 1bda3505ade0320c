"""Multi-modal fusion data: co-registered source pairs, site archives and the inference datalist.

Every source gives ``[{"image": float32 (2, S, S), "label": the same array}]``: the two gray sources
stacked on channels, in [0, 1]. There is no fused ground truth; the label repeats the sources because
the unsupervised loss (:class:`omnifm_monai.losses.FusionLoss`) reads them from it.

Sources (:func:`load_fusion_split`):

- ``None`` / ``""`` / ``"phantom"``: ``num_samples`` co-registered phantom pairs
  (:func:`omnifm_monai.data.phantom.make_coregistered_pair`) spread over :data:`FUSION_PAIRS`, shuffled
  with ``seed`` and split 60/20/20;
- a site ``.npz`` written by :meth:`FusionData.save_npz` (uint8 pairs per split, read back with
  :func:`load_fusion_npz`);
- a folder of pairs (Harvard whole-brain atlas MR/PET/SPECT style), one case folder per pair::

      <dir>/<split>/<case>/a.<ext>     first source  (e.g. MR)
      <dir>/<split>/<case>/b.<ext>     second source (e.g. PET or SPECT)

  with ``split`` in ``train``, ``val``, ``test``; or without split folders, ``<dir>/<case>/{a,b}.<ext>``,
  split 60/20/20 by a seeded permutation of the sorted cases. ``ext``: PNG/JPEG/TIFF/BMP (converted to
  gray, /255) or NIfTI ``.nii``/``.nii.gz`` (a volume gives its middle slice along the last axis, min-max
  scaled). Both sources of a case must have the same shape; each is centre cropped to a square and resized
  (area / bilinear) to ``image_size``. Unreadable files and pairs of different shapes are logged as
  warnings naming the file and the reason, and skipped.

Federation: :func:`omnifm_monai.data.federation.build_fusion_federation`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from omnifm_monai.data.image_io import IMAGE_EXTENSIONS, NIFTI_EXTENSIONS, resize_images, square_crop
from omnifm_monai.data.phantom import make_coregistered_pair
from omnifm_monai.data.site_archive import (
    SPLITS,
    archive_text,
    is_phantom,
    load_site_archive,
    save_site_archive,
    split_cuts,
)

__all__ = [
    "FUSION_PAIRS",
    "FusionData",
    "load_fusion_npz",
    "read_fusion_source",
    "load_fusion_split",
    "fusion_inference_datalist",
    "phantom_pairs",
]

logger = logging.getLogger(__name__)

FUSION_PAIRS: tuple[tuple[str, str], ...] = (("MR-T1", "PET"), ("CT", "MR-T2"), ("MR-T1", "MR-T2"), ("CT", "PET"))
"""Gray modality pairs of the phantom (first source, second source)."""

_NPZ_KIND = "fusion"


# ---- site archives --------------------------------------------------------------------------------------


@dataclass
class FusionData:
    """Co-registered source pairs of one data set or site, per split.

    Args:
        name: data set or site name, e.g. ``"site-2"``.
        modalities: the pair(s), e.g. ``"MR-T1+PET"``; several joined by ``", "``.
        splits: ``"train"``/``"val"``/``"test"`` -> uint8 pairs ``(N, 2, S, S)``.
        source: where the pairs came from, for summaries only.
        slices: optional ``split`` -> int ``(N,)``: the axial slice index of each pair in its volumes (a
            folder of co-registered volumes, :mod:`omnifm_monai.data.federation.fusion_sources`); empty for
            phantom and case-folder pairs.

    Raises:
        ValueError: for an unknown split, a bad array or slice indices that do not match the pairs.
    """

    name: str
    modalities: str
    splits: dict[str, np.ndarray] = field(repr=False)
    source: str = ""
    slices: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"{self.name}: unknown split(s) {sorted(unknown)}; expected keys from {SPLITS}.")
        for split, pairs in self.splits.items():
            if pairs.dtype != np.uint8 or pairs.ndim != 4 or pairs.shape[1] != 2:
                raise ValueError(
                    f"{self.name}: {split} pairs are {pairs.dtype} {pairs.shape}; expected uint8 (N, 2, S, S)."
                )
        for split, index in self.slices.items():
            if split not in self.splits or index.shape != (self.splits[split].shape[0],):
                raise ValueError(
                    f"{self.name}: {split} slice indices have shape {index.shape}; expected one per {split} pair."
                )

    def num_samples(self, split: str) -> int:
        """Pairs in ``split`` (0 when absent)."""
        return int(self.splits[split].shape[0]) if split in self.splits else 0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write a compressed ``.npz`` (keys ``{split}_pairs``, ``{split}_slices`` when known, ``name``,
        ``modalities``, ``source``, ``kind``)."""
        arrays = {f"{s}_pairs": np.ascontiguousarray(x, dtype=np.uint8) for s, x in self.splits.items()}  # (N, 2, S, S)
        arrays |= {f"{s}_slices": np.asarray(z, dtype=np.int32) for s, z in self.slices.items()}  # (N,)
        texts = {"name": self.name, "modalities": self.modalities, "source": self.source, "kind": _NPZ_KIND}
        save_site_archive(path, arrays, texts)


def load_fusion_npz(path: str | os.PathLike) -> FusionData:
    """Read a :meth:`FusionData.save_npz` archive.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: when it is not a readable ``.npz`` or holds no ``{split}_pairs`` (the message names it).
    """
    path = Path(path).expanduser()
    arrays = load_site_archive(path)
    splits = {s: arrays[f"{s}_pairs"] for s in SPLITS if f"{s}_pairs" in arrays}
    if not splits:
        raise ValueError(f"'{path}' holds none of the keys {[f'{s}_pairs' for s in SPLITS]}; not a fusion archive.")
    return FusionData(
        archive_text(arrays, "name", path.stem),
        archive_text(arrays, "modalities", ""),
        splits,
        source=archive_text(arrays, "source", path.name),
        slices={s: arrays[f"{s}_slices"].astype(np.int64) for s in splits if f"{s}_slices" in arrays},
    )


# ---- file reading ---------------------------------------------------------------------------------------


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_EXTENSIONS)


def read_fusion_source(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """One source file -> (float32 gray image (H, W) in [0, 1], its 4 x 4 affine or ``None``).

    PNG/JPEG/TIFF/BMP are converted to gray and divided by 255 (no affine); NIfTI is min-max scaled, a
    volume giving its middle slice along the last axis (the affine then moved to that slice).

    Raises:
        ValueError: when the file is not a supported, readable 2D image (the message names it and why).
    """
    path = Path(path)
    try:
        if _is_nifti(path):
            import nibabel as nib

            nii = nib.load(str(path))
            data = np.asarray(nii.get_fdata(dtype=np.float32))
            affine = np.asarray(nii.affine, dtype=np.float64)
            data = data.reshape(data.shape[:2] + tuple(s for s in data.shape[2:] if s != 1))  # drop unit axes
            if data.ndim == 3:
                k = data.shape[2] // 2
                data = data[:, :, k]
                affine = affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, k], [0, 0, 0, 1]], dtype=np.float64)
            if data.ndim != 2 or not np.isfinite(data).all():
                raise ValueError(f"expected a finite 2D image or 3D volume, got shape {data.shape}")
            low, high = float(data.min()), float(data.max())
            image = (data - low) / (high - low) if high > low else np.zeros_like(data)
            return image.astype(np.float32), affine
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            from PIL import Image

            with Image.open(path) as im:
                image = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            return image, None
    except Exception as e:  # every reader error becomes one message naming the file
        raise ValueError(f"cannot read '{path}': {type(e).__name__}: {e}") from e
    raise ValueError(f"cannot read '{path}': not a PNG/JPEG/TIFF/BMP or NIfTI file.")


def _source_files(case: Path) -> tuple[Path | None, Path | None]:
    """The case folder's ``a.*`` and ``b.*`` files."""
    found: dict[str, Path] = {}
    for p in sorted(case.iterdir()):
        name = p.name.lower()
        stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else Path(name).stem
        if p.is_file() and stem in ("a", "b") and stem not in found:
            found[stem] = p
    return found.get("a"), found.get("b")


def _read_pair(case: Path, image_size: int) -> np.ndarray | None:
    """One case folder -> float32 (2, S, S), or None after a warning naming the file and the reason."""
    path_a, path_b = _source_files(case)
    if path_a is None or path_b is None:
        logger.warning("Skipping case '%s': it needs two source files named a.<ext> and b.<ext>.", case)
        return None
    images = []
    for path in (path_a, path_b):
        try:
            images.append(read_fusion_source(path)[0])
        except ValueError as e:
            logger.warning("Skipping unreadable source '%s': %s", path, e)
            return None
    if images[0].shape != images[1].shape:
        logger.warning(
            "Skipping pair '%s' and '%s': shapes %s and %s differ (sources must be co-registered).",
            path_a,
            path_b,
            images[0].shape,
            images[1].shape,
        )
        return None
    pair = square_crop(np.stack(images))[None]  # (1, 2, m, m)
    return resize_images(np.ascontiguousarray(pair), image_size)[0]


def _case_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_pairs(folder: Path, split: str, image_size: int, seed: int) -> np.ndarray:
    """Pairs (N, 2, S, S) of one split of a folder (``<dir>/<split>/<case>/`` or ``<dir>/<case>/``, seeded split)."""
    if any((folder / s).is_dir() for s in SPLITS):
        cases = _case_dirs(folder / split) if (folder / split).is_dir() else []
        where = folder / split
    else:
        every = _case_dirs(folder)
        order = np.random.default_rng([seed, 0xF5]).permutation(len(every))
        cases = [every[i] for i in sorted(np.split(order, split_cuts(len(every)))[SPLITS.index(split)])]
        where = folder
    pairs = [x for x in (_read_pair(c, image_size) for c in cases) if x is not None]
    if not pairs:
        raise ValueError(
            f"'{where}' holds no readable source pair for split {split!r} ({len(cases)} case folder(s) tried); "
            "expected <dir>/<split>/<case>/{a,b}.<png|nii.gz> (see omnifm_monai.data.fusion)."
        )
    return np.stack(pairs)


# ---- datalists ------------------------------------------------------------------------------------------


def phantom_pairs(
    pairs: Sequence[tuple[str, str]], num_samples: int, image_size: int, seed: int | Sequence[int]
) -> np.ndarray:
    """Co-registered phantom pairs spread over ``pairs`` -> float32 (num_samples, 2, S, S), in pair order."""
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(pairs))]
    parts = []
    for k, (modalities, n) in enumerate(zip(pairs, counts)):
        if n:
            pair_seed = int(np.random.default_rng([*np.atleast_1d(seed), k]).integers(2**31 - 1))
            a, b, _ = make_coregistered_pair(n, modalities, image_size=image_size, spatial_dims=2, seed=pair_seed)
            parts.append(np.concatenate([a[:, :1], b[:, :1]], axis=1))  # (n, 2, S, S)
    return np.concatenate(parts).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _phantom_splits(image_size: int, num_samples: int, seed: int) -> dict[str, np.ndarray]:
    if num_samples < 5:
        raise ValueError(f"num_samples={num_samples} must be >= 5 so that train, val and test are non-empty.")
    pairs = phantom_pairs(FUSION_PAIRS, num_samples, image_size, seed)
    order = np.random.default_rng([seed, 0xF0]).permutation(num_samples)
    return dict(zip(SPLITS, np.split(pairs[order], split_cuts(num_samples))))


def load_fusion_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    num_samples: int = 400,
    seed: int = 0,
) -> list[dict]:
    """The datalist of one split for the fusion bundle.

    Args:
        dataset_dir: ``None``/``""``/``"phantom"``, a site ``.npz`` (:meth:`FusionData.save_npz`) or a
            folder of pairs (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: output size (square).
        num_samples: phantom only: pairs over all three splits (60/20/20).
        seed: phantom pairs and split, and the split of a folder without split folders.

    Returns:
        ``[{"image": float32 (2, S, S), "label": the same array}]`` in [0, 1].

    Raises:
        ValueError: for a bad argument or a source without readable pairs (the message names it).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} must be >= 16.")
    if is_phantom(dataset_dir):
        pairs = _phantom_splits(image_size, num_samples, seed)[split]
    else:
        path = Path(dataset_dir).expanduser()
        if path.is_dir():
            pairs = _folder_pairs(path, split, image_size, seed)
        elif path.is_file() and path.name.lower().endswith(".npz"):
            data = load_fusion_npz(path)
            if not data.num_samples(split):
                raise ValueError(f"'{path}' has no {split!r} pairs.")
            pairs = resize_images(data.splits[split].astype(np.float32) / 255.0, image_size)
        elif path.is_file():
            raise ValueError(f"dataset_dir '{path}' is a file but not a .npz archive.")
        else:
            raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")
    pairs = np.ascontiguousarray(pairs, dtype=np.float32)  # (N, 2, S, S)
    return [{"image": x, "label": x} for x in pairs]


# ---- inference I/O --------------------------------------------------------------------------------------


def fusion_inference_datalist(input_a: str | os.PathLike, input_b: str | os.PathLike, *, image_size: int) -> list[dict]:
    """A pair of files -> ``[{"image": float32 (2, S, S), "source": path of A, "affine", "shape": (H, W)}]``.

    Each source is resized (no crop) to ``image_size`` x ``image_size``; the writer resizes the fused image
    back to A's shape.

    Raises:
        ValueError: when a file is unreadable or the shapes differ (the message names the files).
    """
    (a, affine), (b, _) = read_fusion_source(input_a), read_fusion_source(input_b)
    if a.shape != b.shape:
        raise ValueError(
            f"sources '{input_a}' {a.shape} and '{input_b}' {b.shape} differ in shape; co-register them first."
        )
    pair = resize_images(np.stack([a, b])[None], image_size)[0]  # (2, S, S)
    return [
        {
            "image": np.ascontiguousarray(pair, dtype=np.float32),
            "source": os.fspath(input_a),
            "affine": np.eye(4) if affine is None else affine,
            "nifti": affine is not None,
            "shape": np.asarray(a.shape),
        }
    ]
