"""Files a model-zoo user expects in every bundle: large_files.yml (MONAI's format) and the multi-GPU overlay.

Structure only, no training: the overlay's two-process run is tests/bundles/test_multi_gpu_train.py (opt-in).
"""

from __future__ import annotations

import pytest
from bundle_checks import Bundle
from monai.bundle import ConfigParser

NAMES = ["omnifm_classification", "omnifm_segmentation", "omnifm_super_resolution", "omnifm_fusion", "omnifm_vqa"]


@pytest.mark.parametrize("name", NAMES)
def test_large_files_lists_the_checkpoint_and_its_record_in_monai_format(name):
    bundle = Bundle(name)
    entries = ConfigParser.load_config_file(str(bundle.root / "large_files.yml"))["large_files"]
    assert all(set(e) == {"path", "url", "hash_val", "hash_type"} for e in entries)
    paths = [e["path"] for e in entries]
    assert {"models/model.pt", "models/metadata.json"} <= set(paths)
    assert all(e["hash_type"] in ("md5", "sha1", "sha256", "sha512") for e in entries)
    assert all(not p.startswith(("/", "..")) for p in paths)  # MONAI refuses paths outside the bundle


@pytest.mark.parametrize("name", NAMES)
def test_multi_gpu_overlay_wraps_the_network_and_samples_per_process(name):
    bundle = Bundle(name)
    parser = ConfigParser()
    parser.read_config([bundle.train, str(bundle.configs / "multi_gpu_train.json")])
    assert parser["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert parser["loss#network"] == "@network_def"  # SPAlign reads the unwrapped network's last token
    for split in ("train", "validate"):
        assert parser[f"{split}#dataloader#sampler"] == f"@{split}#sampler"
        assert parser[f"{split}#sampler"]["_target_"] == "DistributedSampler"
    assert parser["train#dataloader#shuffle"] is False
    assert "init_process_group" in parser["initialize"][0]
    assert "destroy_process_group" in parser["finalize"][0]
    assert any(i.endswith("import torch.distributed as dist") for i in parser["imports"])  # "+imports" merged
    handlers = [h["_target_"] for h in parser["train#handlers"]]
    kept = handlers[1:2] if name == "omnifm_vqa" else handlers[:1]
    assert kept == ["ValidationHandler"]  # what the other processes keep: validation (its metrics sync)
