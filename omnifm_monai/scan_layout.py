"""The task layout of a site folder, judged by the task's own data loader (``python -m omnifm_monai.scan --task``).

The file inventory of :mod:`omnifm_monai.scan` says what each file is; this says what training will make of
the folder, file by file, with the loaders' own functions rather than rules of its own:

- classification: ``<dir>/<split>/<class>/...``; the classes and the splits as
  :func:`~omnifm_monai.data.classification.class_names_for` and the loader find them, and every file under a
  class folder read by :func:`~omnifm_monai.data.image_io.load_image_file` (what the loader reads it with):
  accepted, or rejected with the reader's reason. Files outside the class folders are ignored by the loader.
- segmentation: the cases of each split as the loader lists them (MSD ``dataset.json`` or DICOM series
  folders), each case read by the loader's own case reader (LoadImaged, RAS, resize, the image/label grid
  check, ``in_channels``); ``dataset.json`` ``"labels"`` read by
  :func:`~omnifm_monai.data.segmentation.segmentation_class_names`.
- super_resolution, vqa, fusion: the bundle's own datalist expressions (``train#dataset#data``,
  ``validate#dataset#data``) per split; every file the loader skips (its ``Skipping '...'`` warning) is
  rejected with the loader's reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omnifm_monai.data.site_archive import SPLITS

__all__ = ["LayoutReport", "TASK_CHOICES", "check_layout", "pair_shape_problems"]

TASK_CHOICES = ("classification", "segmentation", "super_resolution", "vqa", "fusion")
PER_FILE_TASKS = ("classification", "segmentation")  # a verdict per file; the others: per split and skipped files
SCAN_IMAGE_SIZE = 32  # the loaders' verdict does not depend on the size (segmentation needs >= 32)


@dataclass
class LayoutReport:
    """What the task's loader makes of a site folder.

    Args:
        task: the task.
        splits: split -> items the loader keeps (files; cases for segmentation; datalist entries otherwise).
        classes: classification: split -> class -> accepted files; segmentation: ``{"labels": {id: name}}``.
        accepted: files (relative, POSIX) the loader reads; for a segmentation case, its image and label
            (classification and segmentation only: the other loaders report counts).
        rejected: ``(file, reason)`` for every file the loader skips.
        pairs: segmentation: ``(image, label)`` of every accepted case (the inventory gives their shapes).
        problems: ``(severity, what)`` about the layout itself: a missing split, a class absent from a split, ...
    """

    task: str
    splits: dict[str, int] = field(default_factory=dict)
    classes: dict[str, dict] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No layout error and every split has an item."""
        return not any(s == "error" for s, _ in self.problems) and all(self.splits.get(s) for s in SPLITS)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_table(self) -> str:
        counts = ", ".join(f"{s} {self.splits.get(s, 0)}" for s in SPLITS)
        files = f"{len(self.accepted)} accepted, " if self.task in PER_FILE_TASKS else ""  # else counts only
        lines = [f"Layout for task {self.task}: {counts}; {files}{len(self.rejected)} rejected"]
        for split, per_class in self.classes.items():
            lines.append(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in per_class.items()))
        lines += [f"  REJECTED  {path}: {reason}" for path, reason in self.rejected]
        lines += [f"  {severity.upper()}  {what}" for severity, what in self.problems]
        return "\n".join(lines)


def _train_config(task: str) -> Path:
    """The task's bundle ``configs/train.json`` in this repository."""
    from omnifm_monai.tasks import get_task

    return Path(__file__).resolve().parents[1] / "bundles" / get_task(task).bundle / "configs" / "train.json"


def _rel(path: Path | str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _SkipLog(logging.Handler):
    """Collects the loaders' ``Skipping '<path>' ...`` warnings (the first quoted path is the file)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.skipped: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        found = re.search(r"'([^']+)'", message)
        if message.startswith("Skipping") and found:
            self.skipped.append((found.group(1), message))


def _capture_skips():
    handler = _SkipLog()
    data_logger = logging.getLogger("omnifm_monai.data")
    data_logger.addHandler(handler)
    return handler, lambda: data_logger.removeHandler(handler)


def _classification(root: Path, report: LayoutReport, in_channels: int) -> None:
    from omnifm_monai.data.classification import class_names_for
    from omnifm_monai.data.image_io import image_reader_kind, load_image_file

    try:
        class_names = class_names_for(root)
    except (ValueError, FileNotFoundError) as e:
        report.problems.append(("error", str(e)))
        return
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            report.problems.append(("error", f"no {split}/ folder: the loader needs <dir>/{split}/<class>/<files>"))
            continue
        per_class = {}
        for name in class_names:
            # the files the loader lists: every non-hidden file below the class folder, sorted
            files = sorted(p for p in (split_dir / name).rglob("*") if p.is_file() and not p.name.startswith("."))
            per_class[name] = 0
            for path in files:
                if image_reader_kind(path) is None:
                    report.rejected.append((_rel(path, root), "not a PNG/JPEG/TIFF/BMP, NIfTI or DICOM file"))
                    continue
                try:
                    load_image_file(path, image_size=SCAN_IMAGE_SIZE, in_channels=in_channels)
                except (ValueError, FileNotFoundError) as e:
                    report.rejected.append((_rel(path, root), str(e).replace(str(path), _rel(path, root))))
                    continue
                report.accepted.append(_rel(path, root))
                per_class[name] += 1
            if not per_class[name]:
                report.problems.append(("warning", f"{split}/{name}: no readable image of this class"))
        report.splits[split] = sum(per_class.values())
        report.classes[split] = per_class


def _segmentation(root: Path, report: LayoutReport, in_channels: int, spatial_dims: int, seed: int) -> None:
    # the loader's own case listing and case reader (private to omnifm_monai.data.segmentation)
    from omnifm_monai.data.image_io import fix_channels
    from omnifm_monai.data.segmentation import (
        DICOM_SERIES_READER,
        _decathlon_cases,
        _dicom_cases,
        _read_case,
        case_loader,
        segmentation_class_names,
    )

    try:
        names = segmentation_class_names(root)
        report.classes["labels"] = dict(enumerate(names))
    except (ValueError, OSError) as e:
        report.problems.append(("error", str(e)))
    decathlon = (root / "dataset.json").is_file()
    if not decathlon and not any((p / "image").is_dir() for p in root.iterdir() if p.is_dir()):
        report.problems.append(
            ("error", "neither a Decathlon folder (dataset.json) nor DICOM case folders (<case>/image/ + label.nii.gz)")
        )
        return
    image_reader = "NibabelReader" if decathlon else DICOM_SERIES_READER  # as the loader reads the images
    loader = case_loader(spatial_dims, SCAN_IMAGE_SIZE)
    handler, detach = _capture_skips()
    try:
        for split in SPLITS:
            try:
                cases = _decathlon_cases(root, split, seed) if decathlon else _dicom_cases(root, split, seed)
            except Exception as e:  # a malformed dataset.json
                report.problems.append(("error", f"{split}: cases cannot be listed: {_one_line(e)}"))
                continue
            kept = 0
            for case in cases:
                files = [_rel(case["image"], root), _rel(case["label"], root)]
                try:
                    image, _ = _read_case(case, image_reader, loader)
                    fix_channels(image[None], in_channels, case["image"])
                except Exception as e:  # the loader skips the case for any error
                    reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                    report.rejected.append((f"{files[0]} + {files[1]}", f"{type(e).__name__}: {reason}"))
                    continue
                report.accepted += files
                report.pairs.append((files[0], files[1]))
                kept += 1
            report.splits[split] = kept
    finally:
        detach()
    for path, message in dict.fromkeys(handler.skipped):  # cases the listing itself skipped (DICOM layout)
        report.rejected.append((_rel(path, root), message))


def _bundle_loader(root: Path, report: LayoutReport, task: str) -> None:
    """super_resolution, vqa, fusion: the bundle's own datalist expressions, split by split."""
    from monai.bundle import ConfigParser

    handler, detach = _capture_skips()
    try:
        for split in SPLITS:
            parser = ConfigParser()
            parser.read_config(str(_train_config(task)))
            parser["dataset_dir"], parser["image_size"] = str(root), SCAN_IMAGE_SIZE
            key = "train#dataset#data"
            if split != "train":
                parser["validate#split"], key = split, "validate#dataset#data"
            try:
                report.splits[split] = len(parser.get_parsed_content(key))
            except Exception as e:
                while e.__cause__ is not None:  # the loader's message, not the config engine's
                    e = e.__cause__
                report.problems.append(("error", f"{split}: {_one_line(e)}"))
    finally:
        detach()
    for path, message in dict.fromkeys(handler.skipped):
        report.rejected.append((_rel(path, root), message))


def check_layout(
    root: str | Path, task: str, *, in_channels: int | None = None, spatial_dims: int = 2, seed: int = 0
) -> LayoutReport:
    """What ``task``'s loader makes of the folder ``root`` (see the module docstring).

    Args:
        root: the site's data folder.
        task: one of :data:`TASK_CHOICES`.
        in_channels: channels the bundle asks for (default: the bundle's ``in_channels``).
        spatial_dims: segmentation: 2 (slices) or 3 (volumes).
        seed: the loaders' split seed.

    Raises:
        ValueError: for an unknown task.
    """
    if task not in TASK_CHOICES:
        raise ValueError(f"task={task!r} is not supported; expected one of {TASK_CHOICES}.")
    root = Path(root)
    report = LayoutReport(task)
    if in_channels is None and task in ("classification", "segmentation"):
        from monai.bundle import ConfigParser

        in_channels = int(ConfigParser.load_config_file(str(_train_config(task)))["in_channels"])
    if task == "classification":
        _classification(root, report, in_channels)
    elif task == "segmentation":
        _segmentation(root, report, in_channels, spatial_dims, seed)
    else:
        _bundle_loader(root, report, task)
    for split in SPLITS:
        if split in report.splits and not report.splits[split]:
            report.problems.append(("error", f"{split}: no item the loader can use"))
    report.rejected.sort()
    return report


def pair_shape_problems(layout: LayoutReport, shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, str]]:
    """``(image, reason)`` for each segmentation case whose image and label grids differ in the files
    (``shapes``: the inventory's NIfTI shapes): the loader resizes both to one size, so such a pair would
    train misaligned without an error."""
    problems = []
    for image, label in layout.pairs:
        a, b = shapes.get(image), shapes.get(label)
        if a and b and tuple(a[:3]) != tuple(b[:3]):
            problems.append(
                (
                    image,
                    f"image grid {'x'.join(map(str, a))} and label {label} grid {'x'.join(map(str, b))} differ: "
                    "the loader resizes both to one size, so the mask may not match the image",
                )
            )
    return problems
