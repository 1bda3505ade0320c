"""Fixtures shared across the test folders: a saved phantom classification site and a factory of its client."""

import json

import pytest

from omnifm_monai.data.federation import build_federation
from omnifm_monai.flare.client import SiteTrainer, parse_args
from omnifm_monai.jobs import bundle_root


@pytest.fixture(scope="session")
def phantom_site_file(tmp_path_factory):
    """Factory ``(image_size=32, samples=30) -> (path, num_classes)``: site-1 of a 2-site phantom classification
    federation (seed 0) saved as ``.npz``; each size is built once per session."""
    cache: dict[tuple[int, int], tuple] = {}

    def make(image_size: int = 32, samples: int = 30):
        if (image_size, samples) not in cache:
            root = tmp_path_factory.mktemp(f"phantom_site_{image_size}px")
            federation = build_federation(
                "cross_modality_hard", 2, seed=0, image_size=image_size, samples_per_client=samples
            )
            federation.client("site-1").save_npz(root / "site-1.npz")
            cache[image_size, samples] = (root / "site-1.npz", federation.num_classes)
        return cache[image_size, samples]

    return make


@pytest.fixture
def classification_site():
    """Factory of a classification-bundle ``SiteTrainer`` as the client script builds one (batch size 8)."""

    def make(dataset, num_classes: int, site_dir, *, strategy: str = "omnifm", image_size: int = 32) -> SiteTrainer:
        args = parse_args(
            [
                "--bundle-root", str(bundle_root("classification")), "--strategy", strategy,
                "--dataset-dir", str(dataset), "--num-classes", str(num_classes), "--image-size", str(image_size),
                "--site-dir", str(site_dir), "--bundle-overrides", json.dumps({"batch_size": 8}),
            ]
        )  # fmt: skip
        return SiteTrainer(args, "site-1")

    return make
