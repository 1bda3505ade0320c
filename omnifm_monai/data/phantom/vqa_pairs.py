"""Question-answer pairs of the phantom, derived from the anatomy's ground truth (the VQA task's data)."""

from __future__ import annotations

import numpy as np

from omnifm_monai.data.phantom.anatomy import PhantomAnatomy
from omnifm_monai.data.phantom.properties import _LIVER, FINDINGS, _check_modality, _rng
from omnifm_monai.data.phantom.scanners import _TABLES

__all__ = ["MODALITY_ANSWERS", "appearance_answer", "make_vqa_pairs"]


MODALITY_ANSWERS = {
    "CT": "ct",
    "MR-T1": "t1-weighted mri",
    "MR-T2": "t2-weighted mri",
    "PET": "pet",
    "XRAY": "x-ray",
    "US": "ultrasound",
    "PATHOLOGY": "pathology",
}
_APPEARANCE_WORDS = {  # (brighter / denser, darker / lighter, similar)
    "CT": ("hyperdense", "hypodense", "isodense"),
    "MR-T1": ("hyperintense", "hypointense", "isointense"),
    "MR-T2": ("hyperintense", "hypointense", "isointense"),
    "PET": ("increased uptake", "decreased uptake", "similar uptake"),
    "XRAY": ("radiopaque", "radiolucent", "not distinguishable"),
    "US": ("hyperechoic", "hypoechoic", "isoechoic"),
    "PATHOLOGY": ("hypercellular", "hypocellular", "normocellular"),
}


def appearance_answer(modality: str, finding: int) -> str:
    """How the lesion body compares with the liver in ``modality``, from the property tables (no noise)."""
    up, down, same = _APPEARANCE_WORDS[modality]
    key, threshold = {
        "CT": ("hu", 8.0),
        "MR-T1": ("MR-T1", 0.15),
        "MR-T2": ("MR-T2", 0.15),
        "PET": ("suv", 0.25),
        "XRAY": ("hu", 300.0),
        "US": ("echo", 0.1),
        "PATHOLOGY": ("nuclei", 0.5),
    }[modality]
    lut, solid, _ = _TABLES[key]
    liver, lesion = float(lut[_LIVER]), float(solid[finding])
    diff = lesion - liver
    if modality in ("MR-T1", "MR-T2", "PET", "PATHOLOGY"):  # relative contrast
        diff /= max(liver, 1e-6)
    if modality == "US" and lesion < 0.05:
        return "anechoic"
    if diff > threshold:
        return up
    if diff < -threshold:
        return down
    return same


def _size_word(radius_px: float, size: int) -> str:
    r = radius_px / (size / 2.0)
    return "small" if r < 0.07 else "medium" if r < 0.14 else "large"


def _location_word(centre: np.ndarray, size: int) -> str:
    y, x = float(centre[-2]), float(centre[-1])
    mid = (size - 1) / 2.0
    return f"{'upper' if y < mid else 'lower'} {'left' if x < mid else 'right'}"


def make_vqa_pairs(anatomy: PhantomAnatomy, modality: str, *, seed: int = 0) -> list[dict]:
    """Question-answer pairs about each image, answered from the ground truth.

    Every sample gets (``question_type``: answer): ``"modality"`` (e.g. ``"ct"``), ``"presence"``
    (``"yes"`` iff the finding is not ``"normal"``), ``"abnormality"`` (finding name with spaces, or
    ``"normal"``), ``"finding_presence"`` (yes/no about a named finding, the true one half of the time),
    ``"count"`` (number of foci, ``"0"`` when normal); abnormal samples also get ``"location"`` (image
    quadrant of the lesion centroid, e.g. ``"upper left"``), ``"size"`` (``"small"``/``"medium"``/``"large"``
    from the focus equivalent radius relative to the half field: < 0.07, < 0.14, else) and ``"appearance"``
    (modality-specific words, e.g. CT ``"hypodense"``, US ``"anechoic"``, PET ``"increased uptake"``).
    Yes/no questions are ``"closed"``, the others ``"open"``.

    Args:
        anatomy: ground truth from :func:`generate_anatomy`.
        modality: the modality the images were rendered through.
        seed: non-negative seed of the question wording and of the named finding in closed questions.

    Returns:
        a list of dicts with keys ``index``, ``question``, ``answer``, ``answer_type``, ``question_type``.

    Raises:
        ValueError: for an unknown modality or a negative seed.
    """
    modality = _check_modality(modality)
    rng = _rng(seed, 0x7A0)
    size = anatomy.image_size
    names = [f.replace("_", " ") for f in FINDINGS]
    pairs: list[dict] = []

    def add(i, qtype, question, answer):
        closed = answer in ("yes", "no")
        pairs.append(
            dict(
                index=i,
                question=question,
                answer=answer,
                answer_type="closed" if closed else "open",
                question_type=qtype,
            )
        )

    for i in range(anatomy.num_samples):
        label = int(anatomy.labels[i])
        abnormal = label != 0
        add(i, "modality", "What imaging modality is shown?", MODALITY_ANSWERS[modality])
        presence_q = ("Is there a lesion in the liver?", "Is any abnormality present?")[int(rng.integers(2))]
        add(i, "presence", presence_q, "yes" if abnormal else "no")
        add(i, "abnormality", "What is the main finding?", names[label])
        asked = label if (abnormal and rng.random() < 0.5) else int(rng.integers(1, len(FINDINGS)))
        article = "an" if names[asked][0] in "aeiou" else "a"
        question = f"Does the image show {article} {names[asked]}?"
        add(i, "finding_presence", question, "yes" if asked == label else "no")
        add(i, "count", "How many lesions are there?", str(int(anatomy.lesion_count[i])))
        if abnormal:
            add(i, "location", "In which quadrant of the image is the lesion?",
                _location_word(anatomy.lesion_centre[i], size))  # fmt: skip
            add(i, "size", "How large is the lesion?", _size_word(float(anatomy.lesion_radius[i]), size))
            add(i, "appearance", "How does the lesion appear compared with the surrounding liver?",
                appearance_answer(modality, label))  # fmt: skip
    return pairs
