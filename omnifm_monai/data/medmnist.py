"""MedMNIST-v2 ``.npz`` reader and the in-memory classification data set used for every federated site.

The official MedMNIST-v2 layout is one ``.npz`` archive per data set and image size with the keys
``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images`` and ``test_labels``;
images are ``uint8`` arrays shaped ``(N, S, S)`` (gray) or ``(N, S, S, 3)`` (RGB), labels are integer
arrays shaped ``(N, 1)``. :func:`load_medmnist` reads any archive in that layout (an official file or a
hospital's own export under any file name) and :meth:`ImageClassificationData.save_npz` writes one, adding
a few optional keys (``label_space``, ``class_names``, ``modality``, ``name``, ``source``) so that a site's
split of a federation survives a round trip with its global label ids intact.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from omnifm_monai.data.site_archive import SPLITS, save_site_archive

__all__ = [
    "MEDMNIST_SIZES",
    "MEDMNIST_MODALITIES",
    "MEDMNIST_CLASS_NAMES",
    "ImageClassificationData",
    "load_medmnist",
    "medmnist_file_name",
    "medmnist_flag_and_size",
]

MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
"""Image sizes MedMNIST-v2 publishes for its 2D data sets (28 is the MNIST-like default)."""

MEDMNIST_MODALITIES: dict[str, str] = {
    "breastmnist": "US",
    "pneumoniamnist": "XRAY",
    "retinamnist": "FUNDUS",
    "chestmnist": "XRAY",
    "dermamnist": "DERMOSCOPY",
    "bloodmnist": "MICROSCOPY",
    "pathmnist": "PATHOLOGY",
    "octmnist": "OCT",
    "tissuemnist": "MICROSCOPY",
    "organamnist": "CT",
    "organcmnist": "CT",
    "organsmnist": "CT",
}
"""Imaging modality of each known MedMNIST-v2 2D flag (used when neither the caller nor the file says)."""

_ORGAN_NAMES = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

MEDMNIST_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "breastmnist": ("malignant", "normal/benign"),
    "pneumoniamnist": ("normal", "pneumonia"),
    "retinamnist": ("grade 0", "grade 1", "grade 2", "grade 3", "grade 4"),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pathmnist": (
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ),
    "dermamnist": (
        "actinic keratoses and intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesions",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevi",
        "vascular lesions",
    ),
    "organamnist": _ORGAN_NAMES,
    "organcmnist": _ORGAN_NAMES,
    "organsmnist": _ORGAN_NAMES,
}
"""Class names of known MedMNIST-v2 flags, index = label (from the ``medmnist`` package's INFO table)."""

_MULTI_LABEL_FLAGS = ("chestmnist",)
_SIZE_SUFFIX = re.compile(r"^(?P<flag>.+)_(?P<size>64|128|224)$")
_EXTRA_KEYS = ("label_space", "class_names", "modality", "name", "source")


def medmnist_file_name(flag: str, size: int = 28) -> str:
    """MedMNIST's file name for ``flag`` at ``size``: ``{flag}.npz`` for 28, else ``{flag}_{size}.npz``.

    Args:
        flag: data set flag, e.g. ``"breastmnist"``.
        size: image size, one of :data:`MEDMNIST_SIZES`.

    Raises:
        ValueError: when ``size`` is not a published MedMNIST size.
    """
    if size not in MEDMNIST_SIZES:
        raise ValueError(f"size={size!r} is not a MedMNIST image size; expected one of {MEDMNIST_SIZES}.")
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


@dataclass(frozen=True)
class ImageClassificationData:
    """An image classification data set held in memory, with its train/val/test splits.

    The same type describes a whole MedMNIST file and each site's share of a federation. Labels are
    stored in a *global* label space: ``label_space`` lists the global ids this data set uses and
    ``class_names[i]`` names ``label_space[i]``.

    Args:
        name: data set or site name, e.g. ``"breastmnist"`` or ``"site-3"``.
        modality: imaging modality, e.g. ``"US"``; several joined by ``"+"`` for a mixed site.
        class_names: one name per entry of ``label_space``.
        label_space: the global label ids this data set uses, strictly increasing.
        splits: ``"train"``/``"val"``/``"test"`` -> ``(images, labels)``; images ``uint8`` shaped
            ``(N, S, S)`` or ``(N, S, S, 3)``, labels ``int64`` shaped ``(N,)`` with values in
            ``label_space``.
        source: where the data came from (file name(s) or ``"phantom"``), for summaries only.

    Raises:
        ValueError: when the fields are inconsistent (see the messages).
    """

    name: str
    modality: str
    class_names: tuple[str, ...]
    label_space: tuple[int, ...]
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.label_space):
            raise ValueError(
                f"{self.name}: class_names has {len(self.class_names)} entries but label_space has "
                f"{len(self.label_space)}; expected one name per label id."
            )
        if list(self.label_space) != sorted(set(self.label_space)) or any(i < 0 for i in self.label_space):
            raise ValueError(
                f"{self.name}: label_space={self.label_space} must be non-negative and strictly increasing."
            )
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"{self.name}: unknown split(s) {sorted(unknown)}; expected keys from {SPLITS}.")
        allowed = np.asarray(self.label_space, dtype=np.int64)
        for split, (images, labels) in self.splits.items():
            if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
                raise ValueError(
                    f"{self.name}: {split} images have shape {images.shape}; expected (N, S, S) or (N, S, S, 3)."
                )
            if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
                raise ValueError(
                    f"{self.name}: {split} labels have shape {labels.shape} for {images.shape[0]} images; "
                    "expected (N,)."
                )
            stray = np.setdiff1d(labels, allowed)
            if stray.size:
                raise ValueError(
                    f"{self.name}: {split} labels {stray.tolist()} are not in label_space {self.label_space}."
                )

    @property
    def num_classes(self) -> int:
        """Number of classes this data set uses (``len(label_space)``)."""
        return len(self.label_space)

    @property
    def num_channels(self) -> int:
        """1 for gray images, 3 for RGB (read from the first split)."""
        images = next(iter(self.splits.values()))[0]
        return 3 if images.ndim == 4 else 1

    def num_samples(self, split: str) -> int:
        """Number of images in ``split`` (0 when the split is absent)."""
        return int(self.splits[split][0].shape[0]) if split in self.splits else 0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write a compressed MedMNIST-layout ``.npz`` archive that :func:`load_medmnist` reads back.

        Official keys: ``{split}_images`` (uint8) and ``{split}_labels`` (int64 ``(N, 1)``, global ids).
        Extra keys: ``label_space``, ``class_names``, ``modality``, ``name``, ``source``.

        Args:
            path: destination file; its parent folder is created when missing.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for split, (images, labels) in self.splits.items():
            arrays[f"{split}_images"] = np.ascontiguousarray(images, dtype=np.uint8)
            arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64).reshape(-1, 1)
        arrays["label_space"] = np.asarray(self.label_space, dtype=np.int64)
        arrays["class_names"] = np.asarray(self.class_names, dtype=np.str_)
        arrays["modality"] = np.asarray(self.modality, dtype=np.str_)
        arrays["name"] = np.asarray(self.name, dtype=np.str_)
        arrays["source"] = np.asarray(self.source, dtype=np.str_)
        save_site_archive(path, arrays, {})  # written whole or not at all


def medmnist_flag_and_size(stem: str) -> tuple[str, int]:
    """``"breastmnist_64"`` -> ``("breastmnist", 64)``; a stem without a size suffix -> ``(stem, 28)``."""
    match = _SIZE_SUFFIX.match(stem)
    return (match.group("flag"), int(match.group("size"))) if match else (stem, 28)


def _flag_from_stem(stem: str) -> str:
    """``"breastmnist_64"`` -> ``"breastmnist"``; other stems unchanged (lower-cased)."""
    return medmnist_flag_and_size(stem.lower())[0]


def _download(flag: str, size: int, root: Path) -> Path:
    """Download ``flag`` at ``size`` into ``root`` with the URL and MD5 from the ``medmnist`` package.

    The file is fetched with :func:`monai.apps.download_url` (MD5-checked) rather than the package's own
    ``download()``, which needs torchvision.
    """
    info, has_medmnist = optional_import("medmnist.info", name="INFO")
    if not has_medmnist:
        raise ImportError(
            f"Downloading '{flag}' needs the optional 'medmnist' package: `pip install medmnist` "
            "(or `pip install omnifm-monai[medmnist]`), or pass the path of a local MedMNIST .npz file."
        )
    if flag not in info:
        raise ValueError(f"'{flag}' is not a MedMNIST flag; known flags: {sorted(info)}.")
    suffix = "" if size == 28 else f"_{size}"
    entry = info[flag]
    if f"url{suffix}" not in entry:
        raise ValueError(f"MedMNIST does not publish '{flag}' at size {size}.")
    from monai.apps import download_url

    target = root / medmnist_file_name(flag, size)
    root.mkdir(parents=True, exist_ok=True)
    download_url(url=entry[f"url{suffix}"], filepath=target, hash_val=entry[f"MD5{suffix}"], hash_type="md5")
    return target


def _resolve(path_or_name: str | os.PathLike, root: str | None, size: int, download: bool) -> tuple[Path, str]:
    """Find the archive for a path or a flag; return ``(file, flag-like name)``."""
    candidate = Path(path_or_name).expanduser()
    if candidate.is_file():
        return candidate, _flag_from_stem(candidate.name.removesuffix(".npz"))
    text = os.fspath(path_or_name)
    looks_like_path = text.endswith(".npz") or os.sep in text or (os.altsep is not None and os.altsep in text)
    if looks_like_path:
        raise FileNotFoundError(f"MedMNIST file not found: '{candidate}'.")
    flag = text.lower()
    base = Path(root).expanduser() if root is not None else Path.home() / ".medmnist"
    target = base / medmnist_file_name(flag, size)
    if target.is_file():
        return target, flag
    if download:
        return _download(flag, size, base), flag
    raise FileNotFoundError(
        f"MedMNIST data set '{flag}' (size {size}) not found: tried '{target}'. Pass download=True (needs "
        "the 'medmnist' package and internet access), set root= to the folder holding the file, or pass "
        "the path of a local .npz file."
    )


def _read_archive(file: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` archive eagerly; any failure becomes a ValueError naming the file."""
    try:
        archive = np.load(file, allow_pickle=False)
        if not isinstance(archive, Mapping):
            raise ValueError("it holds a single array, not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise ValueError(f"'{file}' is not a readable MedMNIST .npz archive ({type(e).__name__}: {e}).") from e


def _check_split(file: Path, split: str, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Validate one split; return its labels as int64 ``(N,)``."""
    if images.dtype != np.uint8:
        raise ValueError(f"'{file}': {split}_images has dtype {images.dtype}; expected uint8 as in MedMNIST.")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(
            f"'{file}': {split}_images has shape {images.shape}; expected (N, S, S) gray or (N, S, S, 3) RGB "
            "(3D MedMNIST volumes are not supported)."
        )
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise ValueError(
            f"'{file}': {split}_labels has shape {labels.shape}: multi-label data (such as ChestMNIST) is "
            "not supported by the classification bundle; expected one label per image, shape (N, 1)."
        )
    if labels.ndim not in (1, 2):
        raise ValueError(f"'{file}': {split}_labels has shape {labels.shape}; expected (N, 1).")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"'{file}': {split}_labels has dtype {labels.dtype}; expected integer class ids.")
    labels = labels.reshape(-1).astype(np.int64)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"'{file}': {split}_images holds {images.shape[0]} images but {split}_labels holds "
            f"{labels.shape[0]} labels; expected the same N."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"'{file}': {split}_labels contains negative ids; expected ids >= 0.")
    return labels


def _scalar_text(arrays: dict[str, np.ndarray], key: str) -> str | None:
    return str(arrays[key].reshape(-1)[0]) if key in arrays and arrays[key].size else None


def load_medmnist(
    path_or_name: str | os.PathLike,
    *,
    root: str | None = None,
    size: int = 28,
    download: bool = False,
    modality: str | None = None,
    label_offset: int = 0,
    prefix_class_names: bool | None = None,
) -> ImageClassificationData:
    """Load a MedMNIST-v2 style ``.npz`` archive.

    Args:
        path_or_name: the path of any ``.npz`` in the official layout (the file name does not matter), or a
            MedMNIST flag such as ``"breastmnist"`` looked up in ``root`` as ``{flag}.npz`` (size 28) or
            ``{flag}_{size}.npz``.
        root: folder holding MedMNIST files for a flag; defaults to ``~/.medmnist`` (the ``medmnist``
            package's default). Ignored for a path.
        size: image size of a flag, one of :data:`MEDMNIST_SIZES`. Ignored for a path.
        download: when the flag's file is missing, download it into ``root`` (needs the optional
            ``medmnist`` package for the URL and MD5, and internet access).
        modality: imaging modality; defaults to the file's ``modality`` key, else
            :data:`MEDMNIST_MODALITIES` for a known flag, else ``"UNKNOWN"``.
        label_offset: added to every label, to place the data set in a global label space shared with
            other data sets (a federation mixing MedMNIST files gives each file its own offset).
        prefix_class_names: prefix each class name with the data set name (``"breastmnist:malignant"``);
            ``None`` prefixes when ``label_offset`` is not 0.

    Returns:
        The data set; ``label_space`` is ``offset .. offset + num_classes - 1`` (or the file's stored
        ``label_space`` shifted by ``label_offset``), the number of classes being ``max label + 1`` over all
        splits unless the file stores ``class_names``.

    Raises:
        FileNotFoundError: when the file is not found (and not downloaded); the message names the path
            tried.
        ValueError: when the file is not a readable ``.npz``, misses a key, holds images that are not uint8
            ``(N, S, S)``/``(N, S, S, 3)``, multi-label or mismatched labels, or when an argument is invalid.
        ImportError: when ``download=True`` is needed and ``medmnist`` is not installed.
    """
    if size not in MEDMNIST_SIZES:
        raise ValueError(f"size={size!r} is not a MedMNIST image size; expected one of {MEDMNIST_SIZES}.")
    if label_offset < 0:
        raise ValueError(f"label_offset={label_offset} must be >= 0.")
    file, flag = _resolve(path_or_name, root, size, download)
    arrays = _read_archive(file)

    missing = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels") if f"{s}_{kind}" not in arrays]
    if missing:
        raise ValueError(
            f"'{file}' is missing key(s) {missing}; a MedMNIST archive needs "
            f"{[f'{s}_{k}' for s in SPLITS for k in ('images', 'labels')]}."
        )
    if flag in _MULTI_LABEL_FLAGS:
        raise ValueError(
            f"'{file}' is {flag}, a multi-label data set: multi-label data is not supported by the "
            "classification bundle."
        )
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        images = arrays[f"{split}_images"]
        splits[split] = (images, _check_split(file, split, images, arrays[f"{split}_labels"]))
    channel_shapes = {images.shape[3:] for images, _ in splits.values()}
    if len(channel_shapes) > 1:
        raise ValueError(f"'{file}': splits mix gray and RGB images; expected one layout for all splits.")

    name = _scalar_text(arrays, "name") or flag
    all_labels = np.concatenate([labels for _, labels in splits.values()])
    stored_names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else None
    if "label_space" in arrays:
        local_space = [int(i) for i in arrays["label_space"].reshape(-1)]
        if stored_names is not None and len(stored_names) != len(local_space):
            raise ValueError(
                f"'{file}': class_names has {len(stored_names)} entries but label_space has "
                f"{len(local_space)}; expected one name per label id."
            )
        names = stored_names or tuple(f"class_{i}" for i in local_space)
    else:
        num_classes = int(all_labels.max()) + 1 if all_labels.size else 0
        if stored_names is not None:
            if len(stored_names) < num_classes:
                raise ValueError(
                    f"'{file}': labels reach {num_classes - 1} but class_names lists only {len(stored_names)} classes."
                )
            num_classes = len(stored_names)
        local_space = list(range(num_classes))
        known = MEDMNIST_CLASS_NAMES.get(flag)
        if stored_names is not None:
            names = stored_names
        elif known is not None and len(known) == num_classes:
            names = known
        else:
            names = tuple(f"class_{i}" for i in local_space)
    if prefix_class_names is None:
        prefix_class_names = label_offset != 0
    if prefix_class_names:
        names = tuple(n if n.startswith(f"{name}:") else f"{name}:{n}" for n in names)

    resolved_modality = modality or _scalar_text(arrays, "modality") or MEDMNIST_MODALITIES.get(flag, "UNKNOWN")
    shifted = {s: (images, labels + label_offset) for s, (images, labels) in splits.items()}
    return ImageClassificationData(
        name=name,
        modality=resolved_modality,
        class_names=tuple(names),
        label_space=tuple(i + label_offset for i in local_space),
        splits=shifted,
        source=_scalar_text(arrays, "source") or file.name,
    )
