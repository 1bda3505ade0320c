"""A site whose classification data is a CSV of image files, loaded lazily (dataset_cache) by the client."""

import json

import numpy as np
from PIL import Image

from omnifm_monai.data.classification import load_classification_split
from omnifm_monai.flare.client import SiteTrainer, parse_args
from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.jobs import bundle_root
from omnifm_monai.tasks.base import stack_images


def test_a_lazy_site_gets_its_centroid_images_through_the_dataset_and_sends_a_payload(tmp_path):
    # Prepare: 20 PNG files of two classes listed in a CSV without splits
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = ["image,label"]
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{['normal', 'tumour'][i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    overrides = json.dumps({"batch_size": 4, "dataset_cache": "disk"})
    args = parse_args(
        [
            "--bundle-root", str(bundle_root("classification")), "--strategy", "omnifm",
            "--strategy-options", '{"spectral":true}', "--dataset-dir", str(tmp_path / "labels.csv"),
            "--num-classes", "2", "--image-size", "16",
            "--site-dir", str(tmp_path / "site"), "--bundle-overrides", overrides,
        ]
    )  # fmt: skip
    # Execute
    site = SiteTrainer(args, "site-1")
    site.train()
    params, meta = site.payload()
    # Assert: paths in the dataset, the eager loader's images (unaugmented) for the centroids, a full payload
    assert isinstance(site.trainer.data_loader.dataset.data[0]["image"], str)
    eager = load_classification_split(tmp_path / "labels.csv", "train", image_size=16)  # the same seeded split
    np.testing.assert_allclose(site.train_images.numpy(), stack_images(eager).numpy(), atol=1e-6)
    assert site.num_train == 12 and meta[MetaKey.NUM_SAMPLES] == 12
    assert meta[MetaKey.TOKENS].shape[0] == 2  # one spectral centroid per local class
    assert list((tmp_path / "site" / "cache").glob("images_16px_3ch/*.pt"))  # the cache is in the site's folder
    assert params
