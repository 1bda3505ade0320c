"""Visual question answering data: phantom/SLAKE/VQA-RAD datalists, site archives and the answering helper.

Datalist items (what the VQA bundle's ``Dataset`` holds), one per (image, question) pair::

    {"image": float32 (C, S, S) in [0, 1], "question": int64 (T,), "label": int64 answer id,
     "answer_type": "closed" | "open", "question_type": str}

Items of the same image share one image array (no copy). ``label`` is ``-1`` for an answer outside the
answer vocabulary (only possible in val/test of a folder data set): it always counts as wrong.

Vocabularies (:mod:`omnifm_monai.data.vqa_vocabulary`). The embedding (question words) and the answer head
are shared weights of a federation, so every site and the server use the same ``QuestionTokenizer`` and
``AnswerVocabulary``. :func:`phantom_vocabularies` builds them deterministically from the phantom
generator's full question/answer templates: every phantom source (the centralised phantom, every site
archive of :func:`omnifm_monai.data.federation.build_vqa_federation`) uses them, and a site archive stores
the vocabularies it was written with. A SLAKE/VQA-RAD folder builds them from its training split (sorted,
so the same files give the same vocabularies on every machine).

Phantom split rule (:func:`load_vqa_split` on the phantom, and every federated site):

1. **by image**: train, val and test images come from different anatomies (different seeds), so no test
   image-question combination is ever seen in training;
2. **held-out question type x modality combinations** (:data:`HELD_OUT`): for the modality with index ``j``
   in :data:`~omnifm_monai.data.phantom.MODALITIES`, questions of type ``HELD_OUT_TYPES[j % 6]`` are removed
   from the training split (val and test keep them). Only modality-independent question types are held
   out, so their answers are still learnt from the other modalities (from other sites in a
   modality-specific federation). ``hold_out=False`` keeps every pair.

Folder layout (SLAKE / VQA-RAD, :func:`read_vqa_json`): ``<dir>/{train,validate|val,test}.json``, each a JSON
list of ``{"img_name" | "image_name" | "image": relative image path, "question", "answer",
"answer_type": "CLOSED" | "OPEN", "content_type" | "question_type": ...}``; images below ``<dir>/imgs``
(SLAKE), ``<dir>/images`` or ``<dir>`` itself. Non-English SLAKE entries (``q_lang`` other than ``"en"``) are
skipped. VQA-RAD ships one JSON: split it into ``train.json`` / ``test.json`` first (without a val file the
test file is used for validation, with a warning). Unreadable images are logged (file and reason) and
their questions skipped.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from omnifm_monai.data.image_io import fix_channels, from_uint8, load_image_file, resize_images
from omnifm_monai.data.phantom import MODALITIES, make_phantom_dataset, make_vqa_pairs
from omnifm_monai.data.site_archive import (
    SPLITS,
    archive_text,
    is_phantom,
    load_site_archive,
    save_site_archive,
)
from omnifm_monai.data.vqa_vocabulary import AnswerVocabulary, QuestionTokenizer, VQAVocabularies, phantom_vocabularies

__all__ = [
    "QUESTION_TYPES",
    "HELD_OUT_TYPES",
    "HELD_OUT",
    "vocabularies_for",
    "read_vqa_json",
    "VQAData",
    "load_vqa_npz",
    "load_vqa_split",
    "prepare_vqa_batch",
    "answer_questions",
    "phantom_qa",
]

logger = logging.getLogger(__name__)

QUESTION_TYPES: tuple[str, ...] = (
    "modality",
    "presence",
    "abnormality",
    "finding_presence",
    "count",
    "location",
    "size",
    "appearance",
)
"""Question types of the phantom (see :func:`~omnifm_monai.data.phantom.make_vqa_pairs`)."""

HELD_OUT_TYPES: tuple[str, ...] = ("presence", "count", "location", "size", "abnormality", "finding_presence")
"""Modality-independent question types, held out of training one per modality (see the module docstring)."""

HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    (HELD_OUT_TYPES[j % len(HELD_OUT_TYPES)], m) for j, m in enumerate(MODALITIES)
)
"""(question type, modality) pairs never in a phantom training split."""

_NPZ_KIND = "vqa"
_QA_FIELDS = ("question", "answer", "answer_type", "question_type")


# ---- datalists ------------------------------------------------------------------------------------------


def _items(images: np.ndarray, qa: Sequence[dict], vocab: VQAVocabularies, *, drop_unknown: bool) -> list[dict]:
    """(N, C, S, S) images + ``[{"index", "question", "answer", "answer_type", "question_type"}]`` -> datalist."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    views = list(images)  # one (C, S, S) view per image, shared by its questions
    out = []
    for p in qa:
        label = vocab.answers.index(p["answer"], default=-1)
        if label < 0 and drop_unknown:
            continue
        out.append(
            {
                "image": views[int(p["index"])],
                "question": vocab.tokenizer.encode(p["question"]),
                "label": np.int64(label),
                "answer_type": "closed" if str(p["answer_type"]).lower() == "closed" else "open",
                "question_type": str(p["question_type"]),
            }
        )
    return out


def phantom_qa(modality: str, num_images: int, image_size: int, seed: int) -> tuple[np.ndarray, list[dict]]:
    """Phantom images float32 (N, C, S, S) of one modality and their question-answer pairs."""
    ds = make_phantom_dataset(modality, num_images, image_size=image_size, spatial_dims=2, seed=seed)
    qa = make_vqa_pairs(ds.anatomy, modality, seed=seed)
    for p in qa:
        p["modality"] = modality
    return np.asarray(ds.images, dtype=np.float32), qa


def _hold_out(qa: list[dict], split: str, hold_out: bool) -> list[dict]:
    if split != "train" or not hold_out:
        return qa
    return [p for p in qa if (p["question_type"], p.get("modality", "")) not in HELD_OUT]


@functools.lru_cache(maxsize=6)
def _phantom_split(split: str, image_size: int, in_channels: int, num_samples: int, seed: int, hold_out: bool):
    """Centralised phantom: ``num_samples`` images of ``split`` spread over every modality, own seeds per split."""
    counts = [len(c) for c in np.array_split(np.arange(num_samples), len(MODALITIES))]
    images, qa, offset = [], [], 0
    for m, (modality, n) in enumerate(zip(MODALITIES, counts)):
        if not n:
            continue
        split_seed = int(np.random.default_rng([seed, SPLITS.index(split), m, 0x7A]).integers(2**31 - 1))
        x, pairs = phantom_qa(modality, n, image_size, split_seed)
        images.append(fix_channels(x, in_channels))
        qa += [{**p, "index": p["index"] + offset} for p in pairs]
        offset += n
    return np.concatenate(images), _hold_out(qa, split, hold_out)


def _read_json_list(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read '{path}' as JSON: {type(e).__name__}: {e}") from e
    if not isinstance(data, list):
        raise ValueError(f"'{path}' must hold a JSON list of question entries, got {type(data).__name__}.")
    return data


def _entry_field(entry: dict, keys: Sequence[str], path: Path, default=None):
    for k in keys:
        if k in entry:
            return entry[k]
    if default is not None:
        return default
    raise ValueError(f"'{path}': an entry has none of the keys {list(keys)}: {entry}.")


def read_vqa_json(
    json_path: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    *,
    image_size: int = 64,
    in_channels: int = 3,
    language: str = "en",
) -> tuple[np.ndarray, list[dict]]:
    """Read a SLAKE / VQA-RAD style JSON list and its images.

    Args:
        json_path: the JSON file (see the module docstring for the accepted keys).
        image_root: folder the image paths are relative to (default: the JSON's folder).
        image_size: images are resized to ``image_size`` x ``image_size``.
        in_channels: 1 or 3.
        language: SLAKE's ``q_lang`` to keep (entries without it are kept).

    Returns:
        ``(images float32 (N, C, S, S), qa)`` with one ``{"index", "question", "answer", "answer_type",
        "question_type", "image_file"}`` per question of a readable image. Unreadable images are logged
        (file and reason) and skipped.

    Raises:
        ValueError: for a malformed JSON, or when no image is readable (the message names the file).
    """
    path = Path(json_path).expanduser()
    root = Path(image_root).expanduser() if image_root else path.parent
    entries = _read_json_list(path)
    images: list[np.ndarray] = []
    index_of: dict[str, int] = {}
    bad: set[str] = set()
    qa = []
    for entry in entries:
        if language and str(entry.get("q_lang", language)) != language:
            continue
        name = str(_entry_field(entry, ("img_name", "image_name", "image"), path))
        if name in bad:
            continue
        if name not in index_of:
            file = root / name
            try:
                images.append(load_image_file(file, image_size=image_size, in_channels=in_channels))
            except (OSError, ValueError) as e:
                logger.warning("Skipping the questions of unreadable image '%s': %s", file, e)
                bad.add(name)
                continue
            index_of[name] = len(images) - 1
        qa.append(
            {
                "index": index_of[name],
                "question": str(_entry_field(entry, ("question",), path)),
                "answer": str(_entry_field(entry, ("answer",), path)),
                "answer_type": str(_entry_field(entry, ("answer_type",), path, "open")).lower(),
                "question_type": str(_entry_field(entry, ("content_type", "question_type"), path, "other")).lower(),
                "image_file": str(root / name),
            }
        )
    if not images:
        raise ValueError(f"'{path}' has no question about a readable image ({len(entries)} entries, root '{root}').")
    return np.stack(images), qa


def _folder_json(folder: Path, split: str) -> Path:
    names = {"train": ("train.json",), "val": ("validate.json", "val.json"), "test": ("test.json",)}[split]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    if split == "val" and (folder / "test.json").is_file():
        logger.warning("'%s' has no validate.json/val.json: the test split is used for validation.", folder)
        return folder / "test.json"
    raise FileNotFoundError(
        f"'{folder}' has none of {list(names)} (the SLAKE / VQA-RAD layout, see omnifm_monai.data.vqa)."
    )


def _image_root(folder: Path) -> Path:
    for sub in ("imgs", "images"):
        if (folder / sub).is_dir():
            return folder / sub
    return folder


@functools.lru_cache(maxsize=2)
def _folder_vocabularies(folder: str, max_length: int) -> VQAVocabularies:
    entries = [e for e in _read_json_list(_folder_json(Path(folder), "train")) if str(e.get("q_lang", "en")) == "en"]
    return VQAVocabularies(
        QuestionTokenizer.fit((str(e["question"]) for e in entries), max_length),
        AnswerVocabulary.fit(str(e["answer"]) for e in entries),
    )


def vocabularies_for(dataset_dir: str | os.PathLike | None, max_length: int = 20) -> VQAVocabularies:
    """The vocabularies of a VQA source: phantom templates, a site archive's stored ones, a folder's train split."""
    if is_phantom(dataset_dir):
        return phantom_vocabularies(max_length)
    path = Path(dataset_dir).expanduser()
    if path.is_dir():
        return _folder_vocabularies(str(path.resolve()), max_length)
    if path.is_file():
        stored = load_vqa_npz(path).vocabularies
        return stored if stored is not None else phantom_vocabularies(max_length)
    raise FileNotFoundError(f"dataset_dir '{path}' does not exist.")


def load_vqa_split(
    dataset_dir: str | os.PathLike | None,
    split: str,
    *,
    image_size: int = 64,
    in_channels: int = 3,
    num_samples: int = 280,
    seed: int = 0,
    max_length: int = 20,
    hold_out: bool = True,
) -> list[dict]:
    """The datalist of one split for the VQA bundle (see the module docstring for sources and split rules).

    Args:
        dataset_dir: ``None``/``""``/``"phantom"``, a site ``.npz`` (:meth:`VQAData.save_npz`) or a SLAKE /
            VQA-RAD folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: square image size.
        in_channels: 1 or 3.
        num_samples: phantom only: images of this split, spread over the seven modalities.
        seed: phantom images and questions.
        max_length: question length T.
        hold_out: phantom and site archives: drop the :data:`HELD_OUT` pairs from ``train``.

    Returns:
        the datalist; training items whose answer is outside the vocabulary are dropped, val/test ones get
        label -1.

    Raises:
        ValueError / FileNotFoundError: naming the bad argument or file.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; expected one of {SPLITS}.")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels} is not supported; expected 1 (gray) or 3 (RGB).")
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1.")
    vocab = vocabularies_for(dataset_dir, max_length)
    if is_phantom(dataset_dir):
        images, qa = _phantom_split(split, image_size, in_channels, num_samples, seed, hold_out)
    else:
        path = Path(dataset_dir).expanduser()
        if path.is_dir():
            images, qa = read_vqa_json(
                _folder_json(path, split), _image_root(path), image_size=image_size, in_channels=in_channels
            )
        elif path.name.lower().endswith(".npz"):
            data = load_vqa_npz(path)
            if split not in data.images or not len(data.qa[split]):
                raise ValueError(f"'{path}' has no {split!r} questions.")
            images = fix_channels(resize_images(from_uint8(data.images[split]), image_size), in_channels)
            qa = _hold_out(data.qa[split], split, hold_out)
        else:
            raise ValueError(f"dataset_dir '{path}' is a file but not a .npz archive.")
    return _items(images, qa, vocab, drop_unknown=split == "train")


# ---- site archives and federations ----------------------------------------------------------------------


@dataclass
class VQAData:
    """Images and question-answer pairs of one data set or site, per split.

    Args:
        name: e.g. ``"site-3"``.
        modality: e.g. ``"CT"``; several joined by ``"+"``.
        images: split -> uint8 (N, S, S) or (N, S, S, 3).
        qa: split -> ``[{"index", "question", "answer", "answer_type", "question_type", "modality"}]``.
        vocabularies: the global vocabularies (stored in the archive), or ``None``.
        source: for summaries.
    """

    name: str
    modality: str
    images: dict[str, np.ndarray] = field(repr=False)
    qa: dict[str, list[dict]] = field(repr=False)
    vocabularies: VQAVocabularies | None = field(default=None, repr=False)
    source: str = ""

    def num_questions(self, split: str) -> int:
        return len(self.qa.get(split, []))

    def num_images(self, split: str) -> int:
        return int(self.images[split].shape[0]) if split in self.images else 0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write a compressed ``.npz``: ``{split}_images`` uint8, ``{split}_{index,question,answer,answer_type,
        question_type,modality}`` arrays, ``name``, ``modality``, ``source``, ``kind``, ``vocab`` (JSON)."""
        arrays: dict[str, np.ndarray] = {}
        for split, images in self.images.items():
            qa = self.qa.get(split, [])
            arrays[f"{split}_images"] = np.ascontiguousarray(images, dtype=np.uint8)  # (N, S, S) or (N, S, S, 3)
            arrays[f"{split}_index"] = np.asarray([int(p["index"]) for p in qa], dtype=np.int64)  # (Q,)
            for key in (*_QA_FIELDS, "modality"):
                arrays[f"{split}_{key}"] = np.asarray([str(p.get(key, "")) for p in qa], dtype=np.str_)  # (Q,)
        vocab = json.dumps(self.vocabularies.to_dict()) if self.vocabularies is not None else ""
        texts = {"name": self.name, "modality": self.modality, "source": self.source, "kind": _NPZ_KIND}
        save_site_archive(path, arrays, {**texts, "vocab": vocab})


def load_vqa_npz(path: str | os.PathLike) -> VQAData:
    """Read a :meth:`VQAData.save_npz` archive (``ValueError`` naming the file when it is not one)."""
    path = Path(path).expanduser()
    arrays = load_site_archive(path)
    kind = archive_text(arrays, "kind", "")
    if kind != _NPZ_KIND:
        raise ValueError(f"'{path}' is not a VQA site archive (kind={kind!r}, expected 'vqa').")
    images, qa = {}, {}
    for split in SPLITS:
        if f"{split}_images" not in arrays:
            continue
        images[split] = arrays[f"{split}_images"]
        columns = {k: arrays[f"{split}_{k}"].tolist() for k in (*_QA_FIELDS, "modality")}
        qa[split] = [
            {"index": int(i), **{k: str(columns[k][n]) for k in columns}}
            for n, i in enumerate(arrays[f"{split}_index"].tolist())
        ]
    vocab = archive_text(arrays, "vocab", "")
    return VQAData(
        name=str(arrays["name"]),
        modality=str(arrays["modality"]),
        images=images,
        qa=qa,
        vocabularies=VQAVocabularies.from_dict(json.loads(vocab)) if vocab else None,
        source=archive_text(arrays, "source", path.name),
    )


# ---- engine and bundle helpers --------------------------------------------------------------------------


def prepare_vqa_batch(batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
    """MONAI ``prepare_batch`` of the VQA bundle: ``(image, label, (question,), {})``.

    The trainer and evaluators then call ``network(image, question)`` through the inferer.
    """
    image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)  # (B, C, S, S)
    question = torch.as_tensor(batchdata["question"]).to(device=device, non_blocking=non_blocking)  # (B, T)
    label = torch.as_tensor(batchdata["label"]).to(device=device, non_blocking=non_blocking)  # (B,)
    return image, label, (question.long(),), {}


@torch.no_grad()
def answer_questions(
    network: torch.nn.Module,
    vocabularies: VQAVocabularies,
    image_file: str | os.PathLike,
    questions: str | Sequence[str],
    *,
    image_size: int = 64,
    in_channels: int = 3,
    output_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Answer questions about one image file; prints ``Q: ... A: ...`` and writes ``answers.json``.

    Args:
        network: a trained VQA network (weights loaded).
        vocabularies: the ones saved next to its checkpoint.
        image_file: PNG/JPEG/TIFF/BMP, NIfTI or DICOM file.
        questions: one question or a list of them.
        image_size, in_channels: as in training.
        output_dir: where ``answers.json`` goes (``None``: not written).

    Returns:
        ``[{"file", "question", "answer", "probability"}]``.
    """
    if isinstance(questions, str):
        questions = [questions]
    if not questions:
        raise ValueError("give at least one question.")
    image = torch.as_tensor(load_image_file(image_file, image_size=image_size, in_channels=in_channels))
    device = next(network.parameters()).device
    tokens = torch.as_tensor(np.stack([vocabularies.tokenizer.encode(q) for q in questions]))  # (Q, T)
    network.eval()
    images = image[None].expand(len(questions), *image.shape).to(device)  # (Q, C, S, S)
    probs = torch.softmax(network(images, tokens.to(device)), dim=1).cpu()  # (Q, num_answers)
    results = []
    for q, p in zip(questions, probs):
        k = int(p.argmax())
        results.append(
            {
                "file": str(image_file),
                "question": q,
                "answer": vocabularies.answers.answer(k),
                "probability": float(p[k]),
            }
        )
        print(f"Q: {q}\nA: {results[-1]['answer']} (p={float(p[k]):.3f})")
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "answers.json").write_text(json.dumps(results, indent=1))
    return results
