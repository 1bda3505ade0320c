"""Datalists for the segmentation bundle: ``[{"image": (C, *S) float32 in [0, 1], "label": (1, *S) int64}, ...]``.

:func:`load_segmentation_split` turns one of four sources into the list a MONAI ``Dataset`` takes:

- ``None``, ``""`` or ``"phantom"``: a centralised phantom over all modalities; the masks are the tissue
  label map (values index :data:`~omnifm_monai.data.phantom.TISSUES`).
- a site ``.npz`` written by :meth:`SegmentationData.save_npz` (one site of a simulated federation); when it
  holds ``<split>_spacing`` (the real federation's), every item also gets ``"spacing"``: (D,) mm per axis of
  the ``image_size`` grid.
- a Medical Segmentation Decathlon / BraTS-style folder: ``<dir>/dataset.json`` (read with MONAI's
  ``load_decathlon_datalist``) listing NIfTI ``image``/``label`` pairs, e.g. ``imagesTr/``, ``labelsTr/``.
  The json's ``"validation"`` and ``"test"`` lists (entries with a ``label``) are used when present; the
  splits it lacks are carved from ``"training"`` by a seeded permutation of the cases (60/20/20 shares).
- a DICOM series folder, one sub-folder per case::

      <dir>/<case>/image/      the DICOM files of one series (any names)
      <dir>/<case>/label.nii.gz  the mask on the series' voxel grid (same affine as the series)
      <dir>/labels.json        optional: {"0": "background", "1": "liver", ...}

  split into train/val/test by a seeded permutation of the sorted case names (60/20/20).

Volumes are read by :func:`~omnifm_monai.data.image_io.read_volume` with exactly one reader per file
(``NibabelReader`` for NIfTI, :class:`~omnifm_monai.data.dicom_series.DicomSeriesReader` for a DICOM series:
MONAI's ``PydicomReader`` with stray files named in a warning and skipped; no fallback through MONAI's others),
reoriented with ``Orientationd(axcodes="RAS")``, scaled to [0, 1] per image and channel, given
``in_channels`` channels and resized to ``image_size`` (``area`` for images, ``nearest`` for labels).
``spatial_dims=3`` keeps whole volumes (``image_size`` on every axis); ``spatial_dims=2`` takes axial
slices along the last (RAS: superior) axis, keeping every slice with foreground and a seeded sample of the
empty ones (``empty_slice_fraction`` of the foreground count, at least one). A case that cannot be read is
logged with ``logging.getLogger(__name__).warning`` (its files and the reason) and skipped.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirstd, Orientationd, ScaleIntensityd
from monai.utils import convert_to_numpy

from omnifm_monai.data.image_io import (
    NIFTI_EXTENSIONS,
    fix_channels,
    image_reader_kind,
    read_volume,
    resize_images,
    resize_masks,
)
from omnifm_monai.data.phantom import MODALITIES, TISSUES, make_phantom_dataset
from omnifm_monai.data.site_archive import SPLIT_FRACTIONS, SPLITS, is_phantom, load_site_archive, save_site_archive
from omnifm_monai.errors import SiteDataError, one_line_reason

__all__ = [
    "SegmentationData",
    "carve_splits",
    "case_loader",
    "decathlon_labelled_cases",
    "kept_slices",
    "load_segmentation_npz",
    "load_segmentation_split",
    "segmentation_class_names",
    "segmentation_inference_datalist",
    "phantom_segmentation_arrays",
    "read_case_with_affine",
    "slice_spacing",
]

logger = logging.getLogger(__name__)

_DICOM_LABEL_NAMES = ("label.nii.gz", "label.nii")

DICOM_SERIES_READER = "DicomSeriesReader"
"""The reader of DICOM series folders (a :func:`read_volume` reader name): stray files named and skipped."""


def _check_args(split: str, image_size: int, in_channels: int, spatial_dims: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if image_size < 32:
        raise ValueError(
            f"image_size={image_size} must be >= 32 (the U-Net pools four times; its bottleneck needs > 1 pixel)."
        )
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} must be >= 1.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims={spatial_dims} is not supported; expected 2 (slices) or 3 (volumes).")


def _as_datalist(images: np.ndarray, masks: np.ndarray, spacing: np.ndarray | None = None) -> list[dict]:
    """images (N, C, *S), masks (N, *S), optional spacing (N, D) mm ->
    ``[{"image": (C, *S) float32, "label": (1, *S) int64[, "spacing": (D,) float32]}]``."""
    items = [
        {"image": np.ascontiguousarray(x, dtype=np.float32), "label": np.ascontiguousarray(y[None], dtype=np.int64)}
        for x, y in zip(images, masks)
    ]
    if spacing is not None:
        for item, mm in zip(items, spacing):
            item["spacing"] = np.asarray(mm, dtype=np.float32)  # (D,) mm per spatial axis
    return items


# ---- phantom ------------------------------------------------------------------------------------------------


def phantom_segmentation_arrays(
    modalities: Sequence[str], counts: Sequence[int], image_size: int, spatial_dims: int, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One phantom block per modality: images float32 (n, C_m, *S), masks int64 (n, *S)."""
    images, masks = [], []
    for m, (modality, n) in enumerate(zip(modalities, counts)):
        if n == 0:
            continue
        ds = make_phantom_dataset(modality, n, image_size=image_size, spatial_dims=spatial_dims, seed=seed * 16 + m)
        images.append(np.asarray(ds.images, dtype=np.float32))
        masks.append(np.asarray(ds.masks, dtype=np.int64))
    return images, masks


def _phantom_split(split, image_size, in_channels, spatial_dims, num_samples, seed) -> list[dict]:
    """All phantom modalities, ``num_samples`` images in the split; each split has its own seeds."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1.")
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(MODALITIES))]
    split_seed = seed * len(SPLITS) + SPLITS.index(split)
    images, masks = phantom_segmentation_arrays(MODALITIES, counts, image_size, spatial_dims, split_seed)
    images = [fix_channels(x, in_channels, "phantom") for x in images]
    order = np.random.default_rng([seed, SPLITS.index(split)]).permutation(num_samples)  # interleave modalities
    return _as_datalist(np.concatenate(images)[order], np.concatenate(masks)[order])


# ---- site .npz ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentationData:
    """One site's segmentation data.

    Attributes:
        name: site name (``site-1`` ..).
        modality: the site's modality (``"mixed"`` when it holds several).
        splits: split -> (images uint8 (N, C, *S), masks uint8 (N, *S)); mask values index ``class_names``.
        class_names: names of the mask values.
        source: where the data came from (``"phantom"``, a folder).
        spacing: split -> pixel size in mm per spatial axis of every image, float32 (N, D) (real data only;
            empty: unknown, HD95 is then in pixels).
        cases: split -> names of the volumes its images come from (real data only; for the summary).
    """

    name: str
    modality: str
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    class_names: tuple[str, ...] = TISSUES
    source: str = "phantom"
    spacing: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    cases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def num_samples(self, split: str) -> int:
        """Images in ``split`` (0 when absent)."""
        return int(self.splits[split][0].shape[0]) if split in self.splits else 0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write ``<split>_images``, ``<split>_masks``, ``<split>_spacing`` (when known), ``class_names`` and
        ``meta`` (JSON: name, modality, source, and the cases when known)."""
        arrays = {"class_names": np.asarray(self.class_names)}  # (K,) str
        for split, (images, masks) in self.splits.items():
            arrays[f"{split}_images"], arrays[f"{split}_masks"] = images, masks  # (N, C, *S), (N, *S)
            if split in self.spacing:
                arrays[f"{split}_spacing"] = np.asarray(self.spacing[split], dtype=np.float32)  # (N, D) mm
        meta = {"name": self.name, "modality": self.modality, "source": self.source}
        if self.cases:
            meta["cases"] = {split: list(names) for split, names in self.cases.items()}
        save_site_archive(path, arrays, {"meta": json.dumps(meta)})


def load_segmentation_npz(path: str | os.PathLike) -> SegmentationData:
    """Read a file written by :meth:`SegmentationData.save_npz`.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it cannot be read or lacks the segmentation keys (the message names the file).
    """
    path = Path(path).expanduser()
    arrays = load_site_archive(path)
    splits, spacing = {}, {}
    for split in SPLITS:
        if f"{split}_images" in arrays and f"{split}_masks" in arrays:
            images, masks = arrays[f"{split}_images"], arrays[f"{split}_masks"]
            if (
                images.ndim != masks.ndim + 1
                or images.shape[0] != masks.shape[0]
                or images.shape[2:] != masks.shape[1:]
            ):
                raise ValueError(
                    f"'{path}': {split} images {images.shape} and masks {masks.shape} do not match; "
                    "expected (N, C, *S) and (N, *S)."
                )
            splits[split] = (images, masks)
            if f"{split}_spacing" in arrays:
                spacing[split] = arrays[f"{split}_spacing"].astype(np.float32)  # (N, D) mm
                if spacing[split].shape != (images.shape[0], images.ndim - 2):
                    raise ValueError(
                        f"'{path}': {split}_spacing has shape {spacing[split].shape}; expected "
                        f"{(images.shape[0], images.ndim - 2)} (mm per spatial axis of every image)."
                    )
    if not splits or "meta" not in arrays:
        raise ValueError(
            f"'{path}' is not a segmentation site file: expected <split>_images/<split>_masks and meta keys "
            f"(written by SegmentationData.save_npz), found {sorted(arrays)}."
        )
    meta = json.loads(str(arrays["meta"]))
    names = tuple(str(n) for n in arrays.get("class_names", np.asarray(TISSUES)))
    cases = {split: tuple(c) for split, c in meta.get("cases", {}).items()}
    source = meta.get("source", "phantom")
    return SegmentationData(meta["name"], meta["modality"], splits, names, source, spacing, cases)


def _npz_split(path: Path, split, image_size, in_channels, spatial_dims) -> list[dict]:
    data = load_segmentation_npz(path)
    if split not in data.splits:
        raise ValueError(f"'{path}' has no {split!r} split; it holds {sorted(data.splits)}.")
    raw, masks = data.splits[split]
    if raw.ndim - 2 != spatial_dims:
        raise ValueError(f"'{path}' holds {raw.ndim - 2}D images, but spatial_dims={spatial_dims}.")
    images = fix_channels(raw.astype(np.float32) / 255.0, in_channels, str(path))
    size = (image_size,) * spatial_dims
    spacing = data.spacing.get(split)  # (N, D) mm of the stored grid, or None
    if spacing is not None:
        spacing = spacing * (np.asarray(raw.shape[2:], dtype=np.float32) / image_size)  # mm of the resized grid
    images, masks = resize_images(images, size), resize_masks(masks.astype(np.int64), size)  # (N, C, *S), (N, *S)
    return _as_datalist(images, masks, spacing)


# ---- NIfTI (Decathlon) and DICOM series cases -----------------------------------------------------------------


def carve_splits(cases: list, names: Sequence[str], seed: int | Sequence[int]) -> dict[str, list]:
    """Seeded split of ``cases`` into the splits ``names`` in proportion to their 60/20/20 shares."""
    shares = np.asarray([SPLIT_FRACTIONS[SPLITS.index(n)] for n in names])
    order = np.random.default_rng(seed).permutation(len(cases))
    bounds = np.round(np.cumsum(shares / shares.sum()) * len(cases)).astype(int)
    if len(cases) >= len(names):  # every split gets at least one case
        for i in range(len(names) - 1):
            bounds[i] = min(max(bounds[i], (bounds[i - 1] if i else 0) + 1), len(cases) - (len(names) - 1 - i))
    starts = np.concatenate([[0], bounds[:-1]])
    return {n: [cases[j] for j in order[s:e]] for n, s, e in zip(names, starts, bounds)}


def _decathlon_lists(root: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    """``<root>/dataset.json``'s ``"training"`` cases and its labelled ``"validation"``/``"test"`` lists
    (as ``"val"``/``"test"``), each ``[{"image": path, "label": path}]``."""
    json_file = root / "dataset.json"
    with open(json_file) as f:
        spec = json.load(f)
    explicit = {}
    for key, name in (("validation", "val"), ("test", "test")):
        entries = spec.get(key)
        if isinstance(entries, list) and entries and all(isinstance(e, dict) and "label" in e for e in entries):
            explicit[name] = load_decathlon_datalist(json_file, True, key, base_dir=root)
    return load_decathlon_datalist(json_file, True, "training", base_dir=root), explicit


def decathlon_labelled_cases(root: str | os.PathLike) -> list[dict]:
    """Every labelled case of a Decathlon folder (``"training"``, then labelled ``"validation"``, ``"test"``)."""
    training, explicit = _decathlon_lists(Path(root))
    return training + [case for name in ("val", "test") for case in explicit.get(name, [])]


def _decathlon_cases(root: Path, split: str, seed: int) -> list[dict]:
    """``[{"image": path, "label": path}]`` of ``split`` from ``<root>/dataset.json``."""
    training, explicit = _decathlon_lists(root)
    if split in explicit:
        return explicit[split]
    carved = [s for s in SPLITS if s not in explicit]
    return carve_splits(training, carved, seed)[split]


def _dicom_cases(root: Path, split: str, seed: int) -> list[dict]:
    cases = []
    for case in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = next((case / n for n in _DICOM_LABEL_NAMES if (case / n).is_file()), None)
        if not (case / "image").is_dir() or label is None:
            logger.warning("Skipping case '%s': expected image/ (a DICOM series) and label.nii.gz in it.", case)
            continue
        cases.append({"image": str(case / "image"), "label": str(label)})
    return carve_splits(cases, SPLITS, seed)[split]


def case_loader(spatial_dims: int, image_size: int) -> Compose:
    """Channel first -> RAS -> [0, 1] per channel -> resize (in-plane only for 2D slicing)."""
    from monai.transforms import Resized

    size = (image_size,) * 3 if spatial_dims == 3 else (image_size, image_size, -1)
    return Compose(
        [
            EnsureChannelFirstd(["image", "label"]),
            Orientationd(["image", "label"], axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
            ScaleIntensityd("image", minv=0.0, maxv=1.0, channel_wise=True),
            Resized("image", spatial_size=size, mode="area"),
            Resized("label", spatial_size=size, mode="nearest"),
        ]
    )


def _read_case(case: dict, image_reader: str, loader: Compose) -> tuple[np.ndarray, np.ndarray]:
    """-> image float32 (C, X, Y, Z), mask int64 (X, Y, Z) (:func:`read_case_with_affine` without the affine)."""
    image, mask, _ = read_case_with_affine(case, image_reader, loader)
    return image, mask


def read_case_with_affine(case: dict, image_reader: str, loader: Compose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ``{"image", "label"}`` case through ``loader`` (:func:`case_loader`).

    Returns:
        image float32 (C, X, Y, Z), mask int64 (X, Y, Z) and the loaded grid's affine float64 (4, 4) (RAS,
        mm; after the resize, so its columns are the resized voxel sizes).

    Raises:
        ValueError: naming the file when a read fails, or saying how the pair is inconsistent.
    """
    volumes = {"image": read_volume(case["image"], image_reader), "label": read_volume(case["label"], "NibabelReader")}
    out = loader(volumes)
    affine = np.asarray(convert_to_numpy(out["image"].affine), dtype=np.float64)  # (4, 4)
    image, label = convert_to_numpy(out["image"], dtype=np.float32), convert_to_numpy(out["label"])
    if image.ndim == 3:  # a 2D image (C, X, Y): one slice
        image, label = image[..., None], label[..., None]
    if image.ndim != 4 or label.shape[0] != 1:
        raise ValueError(f"expected a volume and a one-channel mask, got shapes {image.shape} and {label.shape}")
    if image.shape[1:] != label.shape[1:]:
        raise ValueError(f"image {image.shape[1:]} and label {label.shape[1:]} grids differ")
    if not np.isfinite(image).all():
        raise ValueError("the image contains NaN or infinite values")
    mask = np.rint(label[0]).astype(np.int64)
    if mask.min() < 0:
        raise ValueError(f"negative label value {mask.min()}")
    return image, mask, affine


def slice_spacing(affine: np.ndarray) -> np.ndarray:
    """In-plane pixel size in mm of an axial slice of a volume with this (4, 4) affine: float32 (2,)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :2], axis=0).astype(np.float32)


def kept_slices(mask: np.ndarray, empty_fraction: float, rng: np.random.Generator, min_slices: int = 0) -> np.ndarray:
    """Axial slices to keep of a mask (X, Y, Z): every slice with foreground and a seeded sample of the empty
    ones (``empty_fraction`` of the foreground count, at least one, and more while fewer than ``min_slices``
    are kept): sorted (K,) int."""
    has_fg = (mask > 0).reshape(-1, mask.shape[-1]).any(axis=0)  # (Z,)
    fg, empty = np.flatnonzero(has_fg), np.flatnonzero(~has_fg)
    n_empty = min(len(empty), max(1, math.ceil(empty_fraction * len(fg)), min_slices - len(fg)))
    return np.sort(np.concatenate([fg, rng.choice(empty, n_empty, replace=False)]))


def _volume_split(root, cases, split, image_size, in_channels, spatial_dims, seed, image_reader, empty_fraction):
    loader = case_loader(spatial_dims, image_size)
    images, masks = [], []
    for index, case in enumerate(cases):
        try:
            image, mask = _read_case(case, image_reader, loader)
            image = fix_channels(image[None], in_channels, case["image"])[0]
        except Exception as e:  # one bad case must not stop the data set
            logger.warning("Skipping case image='%s' label='%s': %s", case["image"], case["label"], one_line_reason(e))
            continue
        if spatial_dims == 3:
            images.append(image[None])  # (1, C, S, S, S)
            masks.append(mask[None])
            continue
        keep = kept_slices(mask, empty_fraction, np.random.default_rng([seed, index]))
        images.append(np.moveaxis(image[..., keep], -1, 0))  # (C, X, Y, K) -> (K, C, X, Y)
        masks.append(np.moveaxis(mask[..., keep], -1, 0))  # (K, X, Y)
    if not images:
        raise SiteDataError(f"'{root}': no readable case in the {split!r} split ({len(cases)} listed, all skipped).")
    logger.info("'%s' %s split: read %d case(s), skipped %d.", root, split, len(images), len(cases) - len(images))
    return _as_datalist(np.concatenate(images), np.concatenate(masks))


# ---- entry points -----------------------------------------------------------------------------------------------


def load_segmentation_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    in_channels: int = 1,
    spatial_dims: int = 2,
    num_samples: int = 700,
    seed: int = 0,
    empty_slice_fraction: float = 0.25,
) -> list[dict]:
    """The datalist of one split for the segmentation bundle.

    Args:
        dataset_dir: ``None``/``""``/``"phantom"``, a site ``.npz``, a Decathlon folder (with
            ``dataset.json``) or a DICOM series folder (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: size of every output spatial axis.
        in_channels: channels out (grey repeated, RGB averaged to grey).
        spatial_dims: 2 (images / axial slices) or 3 (volumes).
        num_samples: phantom only: images in this split, spread over all modalities.
        seed: phantom images; the case split and the empty-slice sample of folders.
        empty_slice_fraction: 2D slicing of volumes: empty slices kept per slice with foreground.

    Returns:
        ``[{"image": float32 (in_channels, *S) in [0, 1], "label": int64 (1, *S)}, ...]``, ``S`` =
        ``(image_size,) * spatial_dims``.

    Raises:
        ValueError: a bad argument, an unreadable ``.npz``, an unknown folder layout or a split with no
            readable case (the message names the file or folder).
        FileNotFoundError: when ``dataset_dir`` does not exist.
    """
    _check_args(split, image_size, in_channels, spatial_dims)
    if is_phantom(dataset_dir):
        return _phantom_split(split, image_size, in_channels, spatial_dims, num_samples, seed)
    path = Path(dataset_dir).expanduser()
    if path.is_file():
        if path.name.lower().endswith(".npz"):
            return _npz_split(path, split, image_size, in_channels, spatial_dims)
        raise ValueError(f"dataset_dir '{path}' is a file but not a .npz written by SegmentationData.save_npz.")
    if not path.is_dir():
        raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")
    args = (split, image_size, in_channels, spatial_dims, seed)
    if (path / "dataset.json").is_file():
        cases = _decathlon_cases(path, split, seed)
        return _volume_split(path, cases, *args, "NibabelReader", empty_slice_fraction)
    if any((p / "image").is_dir() for p in path.iterdir()):
        cases = _dicom_cases(path, split, seed)
        return _volume_split(path, cases, *args, DICOM_SERIES_READER, empty_slice_fraction)
    raise ValueError(
        f"'{path}' is neither a Decathlon folder (no dataset.json) nor a DICOM series folder "
        "(<dir>/<case>/image/ + <dir>/<case>/label.nii.gz)."
    )


def _names_from_mapping(mapping: dict, source: Path) -> tuple[str, ...]:
    try:
        ids = {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"'{source}': label names must map integer ids to names, got {mapping!r}.") from e
    return tuple(ids.get(i, f"class_{i}") for i in range(max(ids) + 1))


def segmentation_class_names(dataset_dir: str | os.PathLike | None) -> tuple[str, ...]:
    """Names of the mask values: TISSUES (phantom), the ``.npz``'s names, the Decathlon json's ``"labels"``,
    a DICOM folder's ``labels.json`` (``("background", "foreground")`` without one)."""
    if is_phantom(dataset_dir):
        return tuple(TISSUES)
    path = Path(dataset_dir).expanduser()
    if path.is_file() and path.name.lower().endswith(".npz"):
        return load_segmentation_npz(path).class_names
    if (path / "dataset.json").is_file():
        with open(path / "dataset.json") as f:
            labels = json.load(f).get("labels")
        if not isinstance(labels, dict) or not labels:
            raise ValueError(f'\'{path / "dataset.json"}\' has no "labels" mapping (e.g. {{"0": "background"}}).')
        return _names_from_mapping(labels, path / "dataset.json")
    if path.is_dir():
        if (path / "labels.json").is_file():
            with open(path / "labels.json") as f:
                return _names_from_mapping(json.load(f), path / "labels.json")
        return ("background", "foreground")
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")


def segmentation_inference_datalist(input_path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """The volumes to segment: a NIfTI file, a DICOM series folder, or every NIfTI file and DICOM series
    folder below a folder. Each is read once (by the one reader its kind names) to check it; unreadable ones
    are logged (path and reason) and left out.

    Returns:
        ``(items, skipped)``: ``[{"image": path}]`` and ``[{"filename": path, "reason": str}]`` (the bundle's
        :class:`~omnifm_monai.handlers.SkippedFilesWriter` writes them to ``skipped.csv``).

    Raises:
        ValueError: when ``input_path`` is empty or nothing readable is found.
        FileNotFoundError: when it does not exist.
    """
    if not os.fspath(input_path).strip():
        raise ValueError("no input given: set input_dir (--input_dir) to a NIfTI file or a folder.")
    path = Path(input_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"input_dir '{path}' does not exist.")
    candidates: list[tuple[Path, str]] = []
    if path.is_file():
        nifti = path.name.lower().endswith(NIFTI_EXTENSIONS)
        candidates.append((path, "NibabelReader" if nifti else DICOM_SERIES_READER))
    else:
        folders = [path, *sorted(p for p in path.rglob("*") if p.is_dir())]
        for folder in folders:
            if any(part.startswith(".") for part in folder.relative_to(path).parts):
                continue
            files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
            nifti = [p for p in files if p.name.lower().endswith(NIFTI_EXTENSIONS)]
            candidates += [(p, "NibabelReader") for p in nifti]
            others = [p for p in files if p not in nifti]
            if any(image_reader_kind(p) == "pydicom" for p in others):
                candidates.append((folder, DICOM_SERIES_READER))  # the folder's files are one series
            elif others:
                logger.warning("Skipping %d non-NIfTI, non-DICOM file(s) in '%s'.", len(others), folder)
    items: list[dict] = []
    skipped: list[dict] = []
    for candidate, reader in candidates:
        try:
            volume = read_volume(candidate, reader)
            if volume.ndim not in (2, 3, 4):
                raise SiteDataError(f"'{candidate}': expected a 2D or 3D image, got shape {tuple(volume.shape)}")
        except ValueError as e:  # one bad file must not stop the run
            logger.warning("Skipping input: %s", e)
            skipped.append({"filename": str(candidate), "reason": str(e)})
            continue
        items.append({"image": str(candidate)})
    if not items:
        raise SiteDataError(
            f"no readable NIfTI volume or DICOM series in '{path}' ({len(candidates)} candidate(s), "
            f"{len(skipped)} skipped; expected .nii/.nii.gz files or folders of DICOM files)."
        )
    logger.info("Read %d volume(s) from '%s', skipped %d.", len(items), path, len(skipped))
    return items, skipped
