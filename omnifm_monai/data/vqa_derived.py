"""A derived VQA set: template questions answered from the masks of real segmentation volumes.

No real VQA set (SLAKE, VQA-RAD) can be had offline, so this module asks template questions about axial slices
of Medical Segmentation Decathlon folders (``dataset.json`` + ``imagesTr``/``labelsTr``) and answers them
from the masks. The set is *derived*: the answers are facts of the masks (for TotalSegmentator organ maps,
facts of a model's outputs, not of manual annotations), the questions are templates, and every entry says
so in its ``"source"`` field. It is written in the SLAKE layout that :func:`omnifm_monai.data.vqa.read_vqa_json`
reads (``imgs/<case>/z<k>.png`` and ``train.json``/``validate.json``/``test.json``), so the VQA bundle reads it
as any SLAKE folder (``dataset_dir=<out>``)::

    python -m omnifm_monai.data.vqa_derived --from /work/shared/data/real/segmentation --out runs/vqa_derived

Question types (``content_type``; ``CLOSED`` = yes/no, the others ``OPEN``):

- every slice: ``modality`` "What imaging modality is shown?" -> ``dataset.json``'s modality (``"ct"``, ``"mri"``).
- a folder with one foreground label (a tumour or lesion mask):
  ``presence`` "Is there a tumour in this image?" (yes where the mask has a voxel in the slice); every slice
  with the lesion is used and as many lesion-free slices of the same volume (seeded), so yes/no are balanced;
  ``location`` "In which quadrant of the image is the tumour?" (quadrant of the lesion's centre of mass,
  e.g. ``"upper left"``), on slices with the lesion.
- a folder with several foreground labels (organ maps): every slice with an organ;
  ``organ_presence`` "Is the liver visible in this image?" twice per slice, once about a present organ
  (yes) and once about an organ absent from the slice (no), both drawn with a seeded generator;
  ``organ_location`` "In which quadrant of the image is the liver?" about the present organ;
  ``organ_at_position`` "Which organ is at the centre of the upper left quadrant of the image?" (the label
  at one of five marked points: the image centre and the four quadrant centres, drawn among those on an
  organ); ``largest_organ`` "Which organ is the largest in this image?" (most pixels).

Slices are shown as radiologists do: anterior up, the patient's right on the image's left (RAS volume,
``display = slice[::-1, ::-1].T``), zero-padded to a square, then resized to ``image_size``; "left"/"right"
are the image's. Intensities: CT windowed to [-1000, 400] HU, MR scaled between its 1st and 99th percentile
per volume. Positions and areas are measured on the padded slice at its own resolution.

Split rule (``split`` of each entry): the volumes are grouped by scan (``dataset.json`` ``case_notes``
saying ``"SAME SCAN as <case>"`` join a group); with >= 3 scans, whole scans go to train/val/test (a seeded
60/20/20 permutation); with fewer, each scan is cut into contiguous axial slabs: its selected slices sorted
by their world S position (mm, so overlapping volumes of one scan share a slab), the lowest 60 % train, the
next 20 % val, the top 20 % test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist
from monai.transforms import EnsureChannelFirst, Orientation, ScaleIntensityRange, ScaleIntensityRangePercentiles
from monai.utils import convert_to_numpy

from omnifm_monai.data.image_io import read_volume, resize_images, to_uint8
from omnifm_monai.data.segmentation import carve_splits
from omnifm_monai.data.site_archive import SPLITS, split_cuts
from omnifm_monai.data.vqa_vocabulary import AnswerVocabulary, QuestionTokenizer, VQAVocabularies

__all__ = [
    "DERIVED_QUESTION_TYPES",
    "QUADRANTS",
    "DerivedSource",
    "read_derived_source",
    "derived_entries",
    "derived_vocabularies",
    "write_derived_vqa",
    "msd_folders",
    "derive_vqa_sets",
    "main",
]

logger = logging.getLogger(__name__)

DERIVED_QUESTION_TYPES: tuple[str, ...] = (
    "modality",
    "presence",
    "location",
    "organ_presence",
    "organ_location",
    "organ_at_position",
    "largest_organ",
)
"""Question types of the derived set (see the module docstring)."""

QUADRANTS: tuple[str, ...] = ("upper left", "upper right", "lower left", "lower right")
"""Quadrant answers (the image's left and right)."""

_POSITIONS: tuple[tuple[str, float, float], ...] = (  # (name, row, column) as fractions of the side
    ("centre", 0.5, 0.5),
    *((f"centre of the {q} quadrant", 0.25 if q[0] == "u" else 0.75, 0.25 if q.endswith("left") else 0.75)
      for q in QUADRANTS),
)  # fmt: skip
_SPLIT_FILES = {"train": "train.json", "val": "validate.json", "test": "test.json"}
_SAME_SCAN = re.compile(r"SAME SCAN as (\S+)", re.IGNORECASE)
_CT_WINDOW = (-1000.0, 400.0)


@dataclass(frozen=True)
class DerivedSource:
    """The selected slices of one MSD folder, as displayed, with their masks and split.

    Attributes:
        folder: the MSD folder.
        modality: ``dataset.json``'s modality (e.g. ``"CT"``).
        label_names: names of the mask values (index 0 = background).
        slices: ``[(case, k, image float32 (S, S) in [0, 1], mask int64 (H, H), split)]`` in (case, k) order;
            ``k`` is the axial index in the RAS volume, the mask is the padded slice at its own resolution.
        split_rule: ``"by scan"`` or ``"z slabs"``.
    """

    folder: Path
    modality: str
    label_names: tuple[str, ...]
    slices: list[tuple[str, int, np.ndarray, np.ndarray, str]]
    split_rule: str

    @property
    def is_organ_map(self) -> bool:
        """Several foreground labels (organ questions) rather than one lesion label."""
        return len(self.label_names) > 2


def _spec(folder: Path) -> dict:
    json_file = folder / "dataset.json"
    if not json_file.is_file():
        raise FileNotFoundError(f"'{folder}' is not an MSD folder: it has no dataset.json.")
    with open(json_file) as f:
        spec = json.load(f)
    labels = spec.get("labels")
    if not isinstance(labels, dict) or len(labels) < 2:
        raise ValueError(f"'{json_file}' needs a \"labels\" mapping with background and at least one label.")
    return spec


def _label_names(spec: dict) -> tuple[str, ...]:
    ids = {int(k): str(v) for k, v in spec["labels"].items()}
    return tuple("background" if i == 0 else ids.get(i, f"label {i}").replace("_", " ") for i in range(max(ids) + 1))


def _modality(spec: dict) -> str:
    modality = spec.get("modality", {})
    return str(modality.get("0", "unknown") if isinstance(modality, dict) else modality)


def _display(plane: np.ndarray) -> np.ndarray:
    """RAS slice (X, Y) -> radiological view (rows anterior to posterior, columns patient right to left)."""
    return plane[::-1, ::-1].T


def _pad_square(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    m = max(h, w)
    top, left = (m - h) // 2, (m - w) // 2
    return np.pad(plane, ((top, m - h - top), (left, m - w - left)))


def _read_volume(case: dict, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> image float32 (X, Y, Z) in [0, 1], mask int64 (X, Y, Z) (both RAS), world S (mm) of each slice (Z,)."""
    to_ras = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    image = to_ras(EnsureChannelFirst(channel_dim="no_channel")(read_volume(case["image"], "NibabelReader")))
    label = to_ras(EnsureChannelFirst(channel_dim="no_channel")(read_volume(case["label"], "NibabelReader")))
    if modality.upper() == "CT":
        scaled = ScaleIntensityRange(*_CT_WINDOW, 0.0, 1.0, clip=True)(image)
    else:
        scaled = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)(image)
    x, mask = convert_to_numpy(scaled, dtype=np.float32)[0], np.rint(convert_to_numpy(label)[0]).astype(np.int64)
    if x.shape != mask.shape or x.ndim != 3:
        raise ValueError(f"'{case['image']}' and '{case['label']}': expected one 3D grid, got {x.shape}, {mask.shape}.")
    affine = convert_to_numpy(image.affine, dtype=np.float64)  # (4, 4) after RAS
    centre = np.array([(x.shape[0] - 1) / 2, (x.shape[1] - 1) / 2, 0.0, 1.0])
    world_s = np.array([(affine @ (centre + [0, 0, k, 0]))[2] for k in range(x.shape[2])])  # (Z,)
    return x, mask, world_s


def _selected_slices(mask: np.ndarray, organ_map: bool, rng: np.random.Generator) -> np.ndarray:
    """Axial indices to ask about: organ maps every slice with an organ; lesion masks every lesion slice and as
    many lesion-free ones (seeded)."""
    has_fg = (mask > 0).reshape(-1, mask.shape[-1]).any(axis=0)  # (Z,)
    fg, empty = np.flatnonzero(has_fg), np.flatnonzero(~has_fg)
    if organ_map:
        return fg
    n_empty = min(len(empty), max(len(fg), 1))
    return np.sort(np.concatenate([fg, rng.choice(empty, n_empty, replace=False)])).astype(int)


def _scan_of(cases: Sequence[str], notes: dict) -> dict[str, str]:
    """Case -> scan name: ``case_notes`` "SAME SCAN as X" join X's scan, every other case is its own."""
    scan = {}
    for case in cases:
        match = _SAME_SCAN.search(str(notes.get(case, "")))
        scan[case] = match.group(1).rstrip(".,;:") if match and match.group(1).rstrip(".,;:") in cases else case
    return scan


def read_derived_source(folder: str | os.PathLike, *, image_size: int = 128, seed: int = 0) -> DerivedSource:
    """Read an MSD folder's volumes, select and display the slices and assign them to splits (module docstring).

    Raises:
        FileNotFoundError: when ``folder`` has no ``dataset.json``.
        ValueError: for a bad ``dataset.json``, inconsistent volumes or no readable slice (naming the file).
    """
    folder = Path(folder).expanduser()
    spec = _spec(folder)
    names, modality = _label_names(spec), _modality(spec)
    organ_map = len(names) > 2
    cases = load_decathlon_datalist(folder / "dataset.json", True, "training", base_dir=folder)
    case_names = [Path(c["image"]).name.split(".")[0] for c in cases]
    scan_of = _scan_of(case_names, spec.get("case_notes") or {})
    read = []  # (case, k, image, mask, scan, world S)
    for index, (case, name) in enumerate(zip(cases, case_names)):
        x, mask, world_s = _read_volume(case, modality)
        for k in _selected_slices(mask, organ_map, np.random.default_rng([seed, index, 0x51])):
            image = _pad_square(_display(x[..., k]))  # (H, H)
            plane = _pad_square(_display(mask[..., k])).astype(np.int16)  # (H, H)
            small = resize_images(image[None, None], image_size)[0, 0]  # (S, S)
            read.append((name, int(k), small, plane, scan_of[name], round(float(world_s[k]), 2)))
    if not read:
        raise ValueError(f"'{folder}': no slice with a label in any of its {len(cases)} volume(s).")
    scans = sorted(set(scan_of.values()))
    split_of: dict[tuple[str, int], str] = {}
    if len(scans) >= len(SPLITS):
        rule = "by scan"
        carved = carve_splits(scans, SPLITS, seed)
        for split, members in carved.items():
            split_of.update({(r[0], r[1]): split for r in read if r[4] in members})
    else:
        rule = "z slabs"
        for scan in scans:
            positions = sorted({r[5] for r in read if r[4] == scan})
            cuts = split_cuts(len(positions))
            slab = {p: SPLITS[int(np.searchsorted(cuts, i, side="right"))] for i, p in enumerate(positions)}
            split_of.update({(r[0], r[1]): slab[r[5]] for r in read if r[4] == scan})
    slices = [(r[0], r[1], r[2], r[3], split_of[(r[0], r[1])]) for r in read]
    return DerivedSource(folder, modality, names, slices, rule)


def _quadrant(points: np.ndarray, side: int) -> str:
    """Quadrant of the centre of mass of ``points`` (n, 2) (row, column) in a ``side`` x ``side`` image."""
    row, col = points.mean(axis=0)
    mid = (side - 1) / 2.0
    return f"{'upper' if row < mid else 'lower'} {'left' if col < mid else 'right'}"


def _article(name: str) -> str:
    return "an" if name[0] in "aeiou" else "a"


def _slice_questions(source: DerivedSource, mask: np.ndarray, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(question_type, question, answer) about one slice's mask (H, H)."""
    side = mask.shape[0]
    out = [("modality", "What imaging modality is shown?", source.modality.lower())]
    if not source.is_organ_map:
        name = source.label_names[1]
        present = bool((mask > 0).any())
        out.append(("presence", f"Is there {_article(name)} {name} in this image?", "yes" if present else "no"))
        if present:
            out.append(
                ("location", f"In which quadrant of the image is the {name}?", _quadrant(np.argwhere(mask > 0), side))
            )
        return out
    areas = np.bincount(mask.reshape(-1), minlength=len(source.label_names))[1 : len(source.label_names)]  # (L,)
    present, absent = np.flatnonzero(areas > 0) + 1, np.flatnonzero(areas == 0) + 1
    shown = int(rng.choice(present))
    organ = source.label_names[shown]
    out.append(("organ_presence", f"Is the {organ} visible in this image?", "yes"))
    if len(absent):
        missing = source.label_names[int(rng.choice(absent))]
        out.append(("organ_presence", f"Is the {missing} visible in this image?", "no"))
    out.append(
        (
            "organ_location",
            f"In which quadrant of the image is the {organ}?",
            _quadrant(np.argwhere(mask == shown), side),
        )
    )
    marked = [(n, int(mask[min(int(r * side), side - 1), min(int(c * side), side - 1)])) for n, r, c in _POSITIONS]
    on_organ = [(n, v) for n, v in marked if v > 0]
    if on_organ:
        where, value = on_organ[int(rng.integers(len(on_organ)))]
        out.append(("organ_at_position", f"Which organ is at the {where} of the image?", source.label_names[value]))
    out.append(
        ("largest_organ", "Which organ is the largest in this image?", source.label_names[int(areas.argmax()) + 1])
    )
    return out


def derived_entries(source: DerivedSource, *, seed: int = 0) -> dict[str, list[dict]]:
    """The SLAKE-like entries of each split: ``{"qid", "img_name", "question", "answer", "answer_type",
    "content_type", "q_lang", "modality", "volume", "slice", "source"}``, ``img_name`` = ``<case>/z<k>.png``."""
    origin = "model outputs" if source.is_organ_map else "masks"
    note = f"derived from {source.folder.name} masks (template question, answer from the {origin}; not a VQA set)"
    entries: dict[str, list[dict]] = {s: [] for s in SPLITS}
    qid = 0
    for case, k, _, mask, split in source.slices:
        rng = np.random.default_rng([seed, k, sum(map(ord, case)), 0x5E])
        for qtype, question, answer in _slice_questions(source, mask, rng):
            entries[split].append(
                {
                    "qid": qid,
                    "img_name": f"{case}/z{k:03d}.png",
                    "question": question,
                    "answer": answer,
                    "answer_type": "CLOSED" if answer in ("yes", "no") else "OPEN",
                    "content_type": qtype,
                    "q_lang": "en",
                    "modality": source.modality,
                    "volume": case,
                    "slice": k,
                    "split_rule": source.split_rule,
                    "source": note,
                }
            )
            qid += 1
    return entries


def derived_vocabularies(sources: Sequence[DerivedSource], max_length: int = 20) -> VQAVocabularies:
    """The vocabularies of every question and answer the templates can produce for ``sources`` (independent
    of which slices a site holds, like :func:`~omnifm_monai.data.vqa_vocabulary.phantom_vocabularies`)."""
    questions, answers = ["What imaging modality is shown?"], ["yes", "no", *QUADRANTS]
    for source in sources:
        answers.append(source.modality.lower())
        for name in source.label_names[1:]:
            if source.is_organ_map:
                answers.append(name)
                questions += [f"Is the {name} visible in this image?", f"In which quadrant of the image is the {name}?"]
            else:
                questions += [
                    f"Is there {_article(name)} {name} in this image?",
                    f"In which quadrant of the image is the {name}?",
                ]
        if source.is_organ_map:
            questions += [f"Which organ is at the {n} of the image?" for n, _, _ in _POSITIONS]
            questions.append("Which organ is the largest in this image?")
    return VQAVocabularies(QuestionTokenizer.fit(questions, max_length), AnswerVocabulary.fit(answers))


def write_derived_vqa(source: DerivedSource, out_dir: str | os.PathLike, *, seed: int = 0) -> dict[str, int]:
    """Write ``out_dir/imgs/<case>/z<k>.png`` (8-bit gray) and ``train.json``/``validate.json``/``test.json``
    plus ``README.md``; returns the questions per split."""
    from PIL import Image

    out = Path(out_dir)
    for case, k, image, _, _ in source.slices:
        (out / "imgs" / case).mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(image[None, None])[0], mode="L").save(out / "imgs" / case / f"z{k:03d}.png")
    entries = derived_entries(source, seed=seed)
    for split, name in _SPLIT_FILES.items():
        (out / name).write_text(json.dumps(entries[split], indent=1))
    types = sorted({e["content_type"] for split in entries.values() for e in split})
    origin = "organ maps that are model outputs, not manual" if source.is_organ_map else "the shipped masks"
    (out / "README.md").write_text(
        f"# Derived VQA set from {source.folder.name}\n\nTemplate questions answered from the masks of "
        f"{source.folder} ({origin}); "
        f"NOT a VQA data set. Written by omnifm_monai.data.vqa_derived (see its docstring for the templates).\n\n"
        f"Modality {source.modality}; question types {', '.join(types)}; split {source.split_rule}; questions "
        f"train/val/test {'/'.join(str(len(entries[s])) for s in SPLITS)}.\n"
    )
    return {s: len(entries[s]) for s in SPLITS}


def msd_folders(root: str | os.PathLike) -> list[Path]:
    """``root`` itself when it is an MSD folder, else its MSD sub-folders in sorted order.

    Raises:
        FileNotFoundError: when ``root`` is not a folder or holds no MSD folder.
    """
    root = Path(root).expanduser()
    if (root / "dataset.json").is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"'{root}' is not a folder (expected an MSD folder or a folder of them).")
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "dataset.json").is_file())
    if not found:
        raise FileNotFoundError(f"'{root}' has no MSD sub-folder (a folder with dataset.json, imagesTr/, labelsTr/).")
    return found


def derive_vqa_sets(
    root: str | os.PathLike, out_dir: str | os.PathLike, *, image_size: int = 128, seed: int = 0
) -> dict:
    """Derive one SLAKE-like folder per MSD folder of ``root`` into ``out_dir/<folder name>``; returns
    ``{folder name: questions per split}``."""
    return {
        folder.name: write_derived_vqa(
            read_derived_source(folder, image_size=image_size, seed=seed), Path(out_dir) / folder.name, seed=seed
        )
        for folder in msd_folders(root)
    }


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m omnifm_monai.data.vqa_derived --from FOLDER --out DIR [--image-size 128] [--seed 0]``."""
    parser = argparse.ArgumentParser(
        description="Derive template VQA sets (SLAKE layout) from MSD segmentation folders."
    )
    parser.add_argument("--from", dest="source", required=True, help="an MSD folder or a folder of MSD folders")
    parser.add_argument("--out", required=True, help="output folder (one SLAKE-like sub-folder per MSD folder)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, counts in derive_vqa_sets(args.source, args.out, image_size=args.image_size, seed=args.seed).items():
        shares = "/".join(str(counts[s]) for s in SPLITS)
        print(f"{name}: questions train/val/test {shares} -> {Path(args.out) / name}")


if __name__ == "__main__":
    main()
