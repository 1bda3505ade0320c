"""Tests of the embedded multi-modality phantom (``omnifm_monai.data.phantom``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnifm_monai.data.phantom import (
    FINDINGS,
    LESION_PROPERTIES,
    MODALITIES,
    TISSUE_PROPERTIES,
    TISSUES,
    PhantomAnatomy,
    degrade,
    generate_anatomy,
    make_coregistered_pair,
    make_phantom_dataset,
    make_vqa_pairs,
    render,
)

LESION = TISSUES.index("lesion")
LIVER = TISSUES.index("liver")
NORMAL = FINDINGS.index("normal")


@pytest.fixture(scope="module")
def anatomy_2d() -> PhantomAnatomy:
    return generate_anatomy(48, image_size=32, seed=7)


@pytest.fixture(scope="module")
def anatomy_3d() -> PhantomAnatomy:
    return generate_anatomy(6, image_size=16, spatial_dims=3, seed=7)


# ----------------------------------------------------------------------------------------------------------
# Shapes, dtypes, ranges
# ----------------------------------------------------------------------------------------------------------


def test_public_tables_are_consistent():
    assert MODALITIES == ("CT", "MR-T1", "MR-T2", "PET", "XRAY", "US", "PATHOLOGY")
    assert 5 <= len(FINDINGS) <= 8 and FINDINGS[0] == "normal"
    assert TISSUES[0] == "background" and TISSUES[-1] == "lesion"
    assert set(TISSUE_PROPERTIES) == set(TISSUES[:-1])
    assert set(LESION_PROPERTIES) == set(FINDINGS[1:])
    columns = set(TISSUE_PROPERTIES["liver"])
    for parts in LESION_PROPERTIES.values():
        for props in parts.values():
            assert set(props) == columns


@pytest.mark.parametrize("modality", MODALITIES)
def test_render_2d_shape_dtype_range(anatomy_2d, modality):
    # Execute
    images = render(anatomy_2d, modality, seed=1)
    # Assert
    channels = 3 if modality == "PATHOLOGY" else 1
    assert images.shape == (48, channels, 32, 32)
    assert images.dtype == np.float32
    assert np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.01  # not a blank image


@pytest.mark.parametrize("modality", MODALITIES)
def test_render_3d_shape_dtype_range(anatomy_3d, modality):
    images = render(anatomy_3d, modality, seed=1)
    channels = 3 if modality == "PATHOLOGY" else 1
    assert images.shape == (6, channels, 16, 16, 16)
    assert images.dtype == np.float32
    assert np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.01


@pytest.mark.parametrize("spatial_dims,size", [(2, 16), (2, 33), (2, 64), (3, 16), (3, 24)])
def test_anatomy_fields(spatial_dims, size):
    # Prepare
    n = 36
    # Execute
    a = generate_anatomy(n, image_size=size, spatial_dims=spatial_dims, seed=3)
    # Assert
    spatial = (size,) * spatial_dims
    assert a.tissue.shape == (n, *spatial) and a.tissue.dtype == np.int64
    assert a.labels.shape == (n,) and a.labels.dtype == np.int64
    assert a.lesion_mask.shape == (n, *spatial) and a.lesion_mask.dtype == bool
    assert a.lesion_fraction.dtype == np.float32 and a.lesion_core.dtype == np.float32
    assert a.lesion_centre.shape == (n, spatial_dims)
    assert (a.num_samples, a.spatial_shape, a.spatial_dims, a.image_size) == (n, spatial, spatial_dims, size)
    assert a.tissue.min() >= 0 and a.tissue.max() < len(TISSUES)
    np.testing.assert_array_equal(a.lesion_mask, a.tissue == LESION)
    np.testing.assert_array_equal(a.lesion_mask, a.lesion_fraction >= 0.5)
    assert 0.0 <= a.lesion_fraction.min() and a.lesion_fraction.max() <= 1.0
    assert 0.0 <= a.lesion_core.min() and a.lesion_core.max() <= 1.0
    # Every image has a body, a liver and a vertebra; lesions only in abnormal samples, inside the liver.
    per_sample = a.lesion_mask.reshape(n, -1).sum(1)
    abnormal = a.labels != NORMAL
    np.testing.assert_array_equal(per_sample > 0, abnormal)
    np.testing.assert_array_equal(a.lesion_count > 0, abnormal)
    np.testing.assert_array_equal(np.isnan(a.lesion_centre).any(1), ~abnormal)
    assert (a.lesion_radius[abnormal] > 0).all() and (a.lesion_radius[~abnormal] == 0).all()
    assert not ((a.lesion_fraction > 0) & ~np.isin(a.tissue, [LIVER, LESION])).any()
    for t in ("fat", "soft_tissue", "liver", "bone"):
        assert (a.tissue == TISSUES.index(t)).reshape(n, -1).any(1).all(), t
    # The centroid lies on the lesion's bounding box.
    for i in np.nonzero(abnormal)[0]:
        coords = np.argwhere(a.lesion_mask[i])
        assert (coords.min(0) - 1 <= a.lesion_centre[i]).all() and (a.lesion_centre[i] <= coords.max(0) + 1).all()


def _num_components(mask: np.ndarray) -> int:
    """Number of face-connected components of a boolean mask (label propagation, numpy only)."""
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:
        padded = np.pad(labels, 1)
        centre = tuple(slice(1, -1) for _ in range(mask.ndim))
        neighbours = [padded[centre]]
        for axis in range(mask.ndim):
            for lo, hi in ((0, -2), (2, None)):
                index = list(centre)
                index[axis] = slice(lo, hi)
                neighbours.append(padded[tuple(index)])
        grown = np.where(mask, np.maximum.reduce(neighbours), 0)
        if (grown == labels).all():
            return len(np.unique(labels[mask]))
        labels = grown


@pytest.mark.parametrize("spatial_dims,size", [(2, 32), (2, 48), (2, 64), (3, 32)])
def test_lesion_count_matches_connected_components(spatial_dims, size):
    # Cysts and calcification clusters have several foci; every focus must be one separate blob.
    a = generate_anatomy(40, image_size=size, spatial_dims=spatial_dims, seed=11, findings=[1, 3])
    assert a.lesion_count.max() > 1
    for i in range(a.num_samples):
        assert _num_components(a.lesion_mask[i]) == a.lesion_count[i]


def test_select_subset(anatomy_2d):
    sub = anatomy_2d.select([3, 0, 5])
    assert sub.num_samples == 3
    np.testing.assert_array_equal(sub.tissue, anatomy_2d.tissue[[3, 0, 5]])
    np.testing.assert_array_equal(sub.labels, anatomy_2d.labels[[3, 0, 5]])
    assert render(sub, "CT").shape == (3, 1, 32, 32)


# ----------------------------------------------------------------------------------------------------------
# Determinism, label space
# ----------------------------------------------------------------------------------------------------------


def test_same_seed_same_arrays():
    a1 = generate_anatomy(10, image_size=24, seed=5)
    a2 = generate_anatomy(10, image_size=24, seed=5)
    np.testing.assert_array_equal(a1.tissue, a2.tissue)
    np.testing.assert_array_equal(a1.labels, a2.labels)
    np.testing.assert_array_equal(a1.lesion_fraction, a2.lesion_fraction)
    for modality in MODALITIES:
        np.testing.assert_array_equal(render(a1, modality, seed=2), render(a2, modality, seed=2))
    d1 = make_phantom_dataset("US", 8, image_size=24, seed=4)
    d2 = make_phantom_dataset("US", 8, image_size=24, seed=4)
    np.testing.assert_array_equal(d1.images, d2.images)


def test_different_seed_different_arrays():
    a1 = generate_anatomy(10, image_size=24, seed=5)
    a2 = generate_anatomy(10, image_size=24, seed=6)
    assert not np.array_equal(a1.tissue, a2.tissue)
    for modality in MODALITIES:
        assert not np.array_equal(render(a1, modality, seed=0), render(a1, modality, seed=1)), modality


def test_findings_restriction_and_balance():
    # Prepare
    allowed = [1, 3, 5]
    # Execute
    a = generate_anatomy(61, image_size=16, seed=2, findings=allowed)
    ds = make_phantom_dataset("MR-T1", 30, image_size=16, seed=2, findings=[0, 4])
    # Assert
    assert set(a.labels.tolist()) == set(allowed)
    counts = np.bincount(a.labels, minlength=len(FINDINGS))[allowed]
    assert counts.max() - counts.min() <= 1
    assert set(ds.labels.tolist()) == {0, 4}
    full = generate_anatomy(120, image_size=16, seed=2)
    np.testing.assert_array_equal(np.bincount(full.labels), np.full(len(FINDINGS), 120 // len(FINDINGS)))


def test_dataset_masks_and_images_match_anatomy():
    ds = make_phantom_dataset("PET", 12, image_size=32, seed=9)
    assert ds.modality == "PET"
    assert ds.images.shape == (12, 1, 32, 32) and ds.images.dtype == np.float32
    assert ds.masks.shape == (12, 32, 32) and ds.masks.dtype == np.int64
    assert ds.labels.dtype == np.int64
    anatomy = generate_anatomy(12, image_size=32, seed=9)
    np.testing.assert_array_equal(ds.masks, anatomy.tissue)
    np.testing.assert_array_equal(ds.labels, anatomy.labels)
    np.testing.assert_array_equal(ds.images, render(anatomy, "PET", seed=9))
    assert set(np.unique(ds.masks)) <= set(range(len(TISSUES)))


# ----------------------------------------------------------------------------------------------------------
# Physics: every modality sees the lesion, differently
# ----------------------------------------------------------------------------------------------------------


def _lesion_minus_liver(modality: str, finding: str) -> float:
    a = generate_anatomy(24, image_size=64, seed=13, findings=[FINDINGS.index(finding)])
    images = render(a, modality, seed=0)[:, 0]
    inner = (a.lesion_fraction > 0.99) & (a.lesion_core < 0.01)
    return float(images[inner].mean() - images[a.tissue == LIVER].mean())


@pytest.mark.parametrize(
    "modality,finding,sign",
    [
        ("CT", "cyst", -1),
        ("MR-T1", "cyst", -1),
        ("MR-T2", "cyst", 1),
        ("PET", "solid_tumour", 1),
        ("PET", "cyst", -1),
        ("CT", "calcification", 1),
        ("MR-T2", "calcification", -1),
        ("MR-T1", "haemorrhage", 1),
        ("US", "cyst", -1),
    ],
)
def test_lesion_contrast_follows_tissue_physics(modality, finding, sign):
    assert sign * _lesion_minus_liver(modality, finding) > 0.03


def test_ultrasound_sector_and_shadow():
    a = generate_anatomy(16, image_size=64, seed=1)
    images = render(a, "US", seed=0)[:, 0]
    assert (images[:, :8, :8] == 0).all() and (images[:, :8, -8:] == 0).all()  # outside the cone
    assert not np.signbit(images).any()
    # Acoustic shadow: body pixels below the vertebra (strong attenuation) are much darker than the soft
    # tissue elsewhere in the central columns, which the cone always covers.
    bone = a.tissue == TISSUES.index("bone")
    below = (np.cumsum(bone, axis=1) > 0) & ~bone & (a.tissue > 0)
    central = np.zeros_like(bone)
    central[:, 16:, 24:40] = True
    soft = (a.tissue == TISSUES.index("soft_tissue")) & central & ~below
    assert below.sum() > 0 and soft.sum() > 0
    assert images[below].mean() < images[soft].mean() - 0.1


# ----------------------------------------------------------------------------------------------------------
# Task ground truth: co-registration, super-resolution, VQA
# ----------------------------------------------------------------------------------------------------------


def test_coregistered_pair():
    mr, pet, anatomy = make_coregistered_pair(5, image_size=32, seed=3)
    assert mr.shape == pet.shape == (5, 1, 32, 32)
    np.testing.assert_array_equal(mr, render(anatomy, "MR-T1", seed=3))
    np.testing.assert_array_equal(pet, render(anatomy, "PET", seed=3))
    ct, path, _ = make_coregistered_pair(2, ("CT", "PATHOLOGY"), image_size=16, spatial_dims=3)
    assert ct.shape == (2, 1, 16, 16, 16) and path.shape == (2, 3, 16, 16, 16)


@pytest.mark.parametrize("shape,scale", [((3, 1, 32, 32), 2), ((2, 3, 64, 64), 4), ((2, 1, 16, 16, 16), 2)])
def test_degrade_shapes(shape, scale):
    hr = np.random.default_rng(0).random(shape, dtype=np.float32)
    lr = degrade(hr, scale, seed=1)
    assert lr.shape == shape[:2] + tuple(s // scale for s in shape[2:])
    assert lr.dtype == np.float32 and lr.min() >= 0 and lr.max() <= 1
    np.testing.assert_array_equal(lr, degrade(hr, scale, seed=1))
    assert not np.array_equal(lr, degrade(hr, scale, seed=2))


def test_degrade_is_area_average_without_blur_and_noise():
    hr = render(generate_anatomy(2, image_size=32), "CT")
    lr = degrade(hr, 2, blur_sigma=0.0, noise_std=0.0)
    expected = hr.reshape(2, 1, 16, 2, 16, 2).mean((3, 5))
    np.testing.assert_allclose(lr, expected, atol=1e-6)
    np.testing.assert_allclose(degrade(hr, 1, blur_sigma=0, noise_std=0), hr, atol=1e-6)


def test_vqa_answers_follow_ground_truth(anatomy_2d):
    pairs = make_vqa_pairs(anatomy_2d, "CT", seed=0)
    by_type: dict[str, dict[int, str]] = {}
    for p in pairs:
        assert set(p) == {"index", "question", "answer", "answer_type", "question_type"}
        assert p["answer_type"] == ("closed" if p["answer"] in ("yes", "no") else "open")
        by_type.setdefault(p["question_type"], {})[p["index"]] = p["answer"]
    n = anatomy_2d.num_samples
    labels = anatomy_2d.labels
    assert all(by_type["modality"][i] == "ct" for i in range(n))
    for i in range(n):
        assert by_type["presence"][i] == ("yes" if labels[i] != NORMAL else "no")
        assert by_type["abnormality"][i] == FINDINGS[labels[i]].replace("_", " ")
        assert by_type["count"][i] == str(anatomy_2d.lesion_count[i])
    abnormal = set(np.nonzero(labels != NORMAL)[0].tolist())
    for qtype in ("location", "size", "appearance"):
        assert set(by_type[qtype]) == abnormal
    for i in abnormal:
        y, x = anatomy_2d.lesion_centre[i]
        vertical, horizontal = by_type["location"][i].split()
        assert (vertical == "upper") == (y < 15.5) and (horizontal == "left") == (x < 15.5)
        assert by_type["size"][i] in ("small", "medium", "large")
    # Modality-specific appearance words come from the same ground truth.
    cysts = anatomy_2d.select(np.nonzero(labels == FINDINGS.index("cyst"))[0])

    def appearance(modality: str) -> set[str]:
        return {p["answer"] for p in make_vqa_pairs(cysts, modality) if p["question_type"] == "appearance"}

    assert appearance("CT") == {"hypodense"}
    assert appearance("MR-T2") == {"hyperintense"}
    assert appearance("US") == {"anechoic"}
    assert appearance("PET") == {"decreased uptake"}


# ----------------------------------------------------------------------------------------------------------
# Cross-modality heterogeneity is real
# ----------------------------------------------------------------------------------------------------------


def _histogram_features(images: np.ndarray, bins: int = 32) -> np.ndarray:
    """Log counts of an intensity histogram per image: a translation-invariant texture-free descriptor."""
    flat = images.reshape(images.shape[0], -1)
    idx = np.minimum((flat * bins).astype(np.int64), bins - 1)
    counts = np.stack([np.bincount(row, minlength=bins) for row in idx])
    return np.log1p(counts).astype(np.float32)


def _fit_softmax_regression(features: np.ndarray, labels: np.ndarray, num_classes: int):
    torch.manual_seed(0)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    mean, std = x.mean(0), x.std(0) + 1e-6
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy((x - mean) / std @ weight + bias, y) + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problem: threads only add contention on a shared machine
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)

    def predict(feats: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return ((torch.from_numpy(feats) - mean) / std @ weight + bias).argmax(1).numpy()

    return predict


def test_classifier_trained_on_ct_fails_on_other_modalities():
    # Prepare: CT training set; held-out anatomies rendered through CT, MR-T2 and US.
    train = make_phantom_dataset("CT", 600, image_size=32, seed=101)
    test = generate_anatomy(300, image_size=32, seed=202)
    predict = _fit_softmax_regression(_histogram_features(train.images), train.labels, len(FINDINGS))
    # Execute
    acc = {
        m: float((predict(_histogram_features(render(test, m, seed=3))) == test.labels).mean())
        for m in ("CT", "MR-T2", "US")
    }
    # Assert: clearly above chance on held-out CT, a large drop on the other scanners.
    chance = 1.0 / len(FINDINGS)
    assert acc["CT"] > chance + 0.25, acc
    assert acc["CT"] - acc["MR-T2"] >= 0.25, acc
    assert acc["CT"] - acc["US"] >= 0.25, acc


# ----------------------------------------------------------------------------------------------------------
# Bad arguments
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: generate_anatomy(0), "num_samples=0"),
        (lambda: generate_anatomy(-3), "num_samples=-3"),
        (lambda: generate_anatomy(2.5), "num_samples=2.5"),
        (lambda: generate_anatomy(True), "num_samples=True"),
        (lambda: generate_anatomy(4, image_size=8), "image_size=8"),
        (lambda: generate_anatomy(4, spatial_dims=1), "spatial_dims=1"),
        (lambda: generate_anatomy(4, spatial_dims=4), "spatial_dims=4"),
        (lambda: generate_anatomy(4, seed=-1), "seed=-1"),
        (lambda: generate_anatomy(4, findings=[]), "findings"),
        (lambda: generate_anatomy(4, findings=[9]), "findings"),
        (lambda: generate_anatomy(4, findings=[1, 1]), "findings"),
        (lambda: generate_anatomy(4, findings="cyst"), "findings"),
        (lambda: make_phantom_dataset("MRI", 4), "modality='MRI'"),
        (lambda: make_phantom_dataset("ct", 4), "Did you mean 'CT'"),
        (lambda: make_phantom_dataset("CT", 0), "num_samples=0"),
        (lambda: make_coregistered_pair(2, ("CT", "CT")), "modalities"),
        (lambda: make_coregistered_pair(2, ("CT",)), "modalities"),
        (lambda: make_coregistered_pair(2, ("CT", "SPECT")), "SPECT"),
        (lambda: degrade(np.zeros((1, 1, 32, 32), np.float32), 3), "scale=3"),
        (lambda: degrade(np.zeros((1, 1, 32, 32), np.float32), 0), "scale=0"),
        (lambda: degrade(np.zeros((32, 32), np.float32), 2), "images.shape"),
        (lambda: degrade(np.zeros((1, 1, 8, 8), np.float32), 2, noise_std=-1), "noise_std"),
        (lambda: degrade(np.zeros((1, 1, 8, 8), np.float32), 2, blur_sigma=-1), "blur_sigma"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_modality_lists_valid_ones(anatomy_2d):
    with pytest.raises(ValueError) as err:
        render(anatomy_2d, "SPECT")
    for modality in MODALITIES:
        assert modality in str(err.value)
    with pytest.raises(ValueError, match="modality"):
        make_vqa_pairs(anatomy_2d, "fMRI")
    with pytest.raises(TypeError, match="PhantomAnatomy"):
        render(np.zeros((1, 8, 8)), "CT")
