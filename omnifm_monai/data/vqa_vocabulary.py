"""The VQA vocabularies every site and the server share: question tokenizer and answer vocabulary.

The embedding (question words) and the answer head are shared weights of a federation, so every site and
the server must use the same :class:`QuestionTokenizer` and :class:`AnswerVocabulary`.
:func:`phantom_vocabularies` builds them deterministically from the phantom generator's full
question/answer templates (:func:`omnifm_monai.data.phantom.make_vqa_pairs`).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnifm_monai.data.phantom import (
    FINDINGS,
    MAX_LESION_FOCI,
    MODALITIES,
    MODALITY_ANSWERS,
    appearance_answer,
    generate_anatomy,
    make_vqa_pairs,
)

__all__ = ["PAD", "UNK", "QuestionTokenizer", "AnswerVocabulary", "VQAVocabularies", "phantom_vocabularies"]

PAD, UNK = "<pad>", "<unk>"
"""Special tokens of :class:`QuestionTokenizer` (ids 0 and 1)."""

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]")


def _words(text: str) -> list[str]:
    """Lower-case word tokens; punctuation marks are tokens of their own, hyphenated words stay whole."""
    return _WORD.findall(str(text).lower())


class QuestionTokenizer:
    """Word-level question tokenizer: lower-case, punctuation split, ``<pad>`` = 0, ``<unk>`` = 1, fixed length.

    Args:
        words: the vocabulary without the special tokens (ids follow in this order, from 2).
        max_length: T, questions are truncated or padded to it.

    Raises:
        ValueError: for ``max_length < 1`` or a duplicated / special word.
    """

    def __init__(self, words: Sequence[str] = (), max_length: int = 20) -> None:
        if int(max_length) < 1:
            raise ValueError(f"max_length={max_length} must be >= 1.")
        words = list(words)
        if len(set(words)) != len(words) or PAD in words or UNK in words:
            raise ValueError("words must be unique and must not contain the special tokens <pad>/<unk>.")
        self.max_length = int(max_length)
        self.itos = [PAD, UNK, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def fit(cls, questions: Iterable[str], max_length: int = 20) -> QuestionTokenizer:
        """Vocabulary of every word in ``questions`` (sorted, so it does not depend on their order)."""
        return cls(sorted({w for q in questions for w in _words(q)}), max_length=max_length)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included (the embedding's size)."""
        return len(self.itos)

    def encode(self, question: str) -> np.ndarray:
        """``question`` -> int64 (T,): word ids (``<unk>`` for unknown words), truncated, padded with 0."""
        ids = [self.stoi.get(w, 1) for w in _words(question)][: self.max_length]
        out = np.zeros(self.max_length, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """Token ids -> words joined by spaces (padding dropped)."""
        return " ".join(self.itos[int(i)] for i in np.asarray(ids).reshape(-1) if int(i) != 0)

    def to_dict(self) -> dict:
        return {"words": self.itos[2:], "max_length": self.max_length}

    @classmethod
    def from_dict(cls, data: dict) -> QuestionTokenizer:
        return cls(data["words"], max_length=data["max_length"])

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary and length as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> QuestionTokenizer:
        """Read a :meth:`save` file."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuestionTokenizer) and self.to_dict() == other.to_dict()


class AnswerVocabulary:
    """The closed answer set: normalised answer string <-> class id of the answer head.

    Normalisation (exact match of open answers): lower-case, whitespace collapsed, surrounding spaces and
    a trailing ``.`` removed, ``"solid_tumour"``-style underscores turned into spaces.

    Args:
        answers: the answers (normalised here; duplicates after normalisation are an error).
    """

    def __init__(self, answers: Sequence[str]) -> None:
        normalised = [self.normalize(a) for a in answers]
        if len(set(normalised)) != len(normalised):
            raise ValueError(f"answers are not unique after normalisation: {sorted(normalised)}.")
        if not normalised:
            raise ValueError("an answer vocabulary needs at least one answer.")
        self.answers = normalised
        self.index_of = {a: i for i, a in enumerate(normalised)}

    @staticmethod
    def normalize(answer) -> str:
        """The comparison form of an answer (see the class docstring)."""
        text = " ".join(str(answer).replace("_", " ").lower().split())
        return text.rstrip(".").strip()

    @classmethod
    def fit(cls, answers: Iterable[str]) -> AnswerVocabulary:
        """Every distinct normalised answer, sorted."""
        return cls(sorted({cls.normalize(a) for a in answers}))

    def __len__(self) -> int:
        return len(self.answers)

    def __contains__(self, answer) -> bool:
        return self.normalize(answer) in self.index_of

    def index(self, answer, default: int | None = None) -> int:
        """Class id of ``answer``; ``default`` (or a ``KeyError`` naming it) when it is not in the set."""
        key = self.normalize(answer)
        if key in self.index_of:
            return self.index_of[key]
        if default is not None:
            return default
        raise KeyError(f"answer {answer!r} (normalised {key!r}) is not in the answer vocabulary of {len(self)}.")

    def answer(self, index: int) -> str:
        """The answer string of class id ``index``."""
        return self.answers[int(index)]

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps({"answers": self.answers}, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnswerVocabulary:
        return cls(json.loads(Path(path).read_text())["answers"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnswerVocabulary) and self.answers == other.answers


@dataclass(frozen=True)
class VQAVocabularies:
    """The tokenizer and answer vocabulary a VQA network is trained with (saved as ``vocab.json``)."""

    tokenizer: QuestionTokenizer
    answers: AnswerVocabulary

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def num_answers(self) -> int:
        return len(self.answers)

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    def to_dict(self) -> dict:
        return {"tokenizer": self.tokenizer.to_dict(), "answers": self.answers.answers}

    @classmethod
    def from_dict(cls, data: dict) -> VQAVocabularies:
        return cls(QuestionTokenizer.from_dict(data["tokenizer"]), AnswerVocabulary(data["answers"]))

    def save(self, path: str | os.PathLike) -> None:
        """Write both as one JSON file (folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> VQAVocabularies:
        """Read a :meth:`save` file (``FileNotFoundError`` naming it when absent)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file '{path}' does not exist (training writes it next to model.pt).")
        return cls.from_dict(json.loads(path.read_text()))


@functools.lru_cache(maxsize=4)
def phantom_vocabularies(max_length: int = 20) -> VQAVocabularies:
    """The global vocabularies of every phantom VQA source, from the generator's full templates.

    Answers: yes/no, every modality name, every finding name, counts 0..max foci, the four quadrants, the
    three sizes and the appearance word of every (modality, finding); questions: every wording the generator
    uses (drawn with a fixed seed over every finding and modality). Independent of any site's data.
    """
    names = [f.replace("_", " ") for f in FINDINGS]
    answers = ["yes", "no", *MODALITY_ANSWERS.values(), *names, *(str(k) for k in range(MAX_LESION_FOCI + 1))]
    answers += [f"{v} {h}" for v in ("upper", "lower") for h in ("left", "right")]
    answers += ["small", "medium", "large"]
    answers += [appearance_answer(m, f) for m in MODALITIES for f in range(1, len(FINDINGS))]
    questions = [f"Does the image show {'an' if n[0] in 'aeiou' else 'a'} {n}?" for n in names[1:]]
    for f in range(len(FINDINGS)):
        anatomy = generate_anatomy(16, image_size=16, seed=f, findings=[f])
        questions += [p["question"] for p in make_vqa_pairs(anatomy, MODALITIES[f % len(MODALITIES)], seed=f)]
    return VQAVocabularies(QuestionTokenizer.fit(questions, max_length), AnswerVocabulary.fit(answers))


# ---- datalists ------------------------------------------------------------------------------------------
