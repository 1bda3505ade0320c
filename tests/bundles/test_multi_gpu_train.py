"""configs/multi_gpu_train.json: torchrun + DDP, two CPU processes with the gloo backend, tiny sizes.

Opt-in (``OMNIFM_RUN_MULTI_GPU=1``): two processes importing torch, MONAI and the bundle take 25-70 s on the
shared 2-core machine, past what CI allows a test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bundle_checks import Bundle, eager_network

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("OMNIFM_RUN_MULTI_GPU") != "1", reason="opt-in (OMNIFM_RUN_MULTI_GPU=1): two torchrun processes"
    ),
]

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ["omnifm_classification", "omnifm_segmentation", "omnifm_super_resolution", "omnifm_fusion", "omnifm_vqa"]


@pytest.mark.parametrize("name", BUNDLES)
def test_two_process_gloo_training_saves_one_checkpoint_from_rank_zero(name, tmp_path):
    bundle = Bundle(name)
    configs = f"['{bundle.train}','{bundle.configs / 'multi_gpu_train.json'}']"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        "-m", "monai.bundle", "run", "--config_file", configs, "--bundle_root", str(bundle.root),
        "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "eval"), "--logging_file", "False",
        "--epochs", "1", "--image_size", "32", "--num_samples", "16", "--batch_size", "4", "--progress_bar", "False",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) >= ["metadata.json", "model.pt"]
    runs = list((tmp_path / "eval" / "tensorboard").iterdir())
    assert len(runs) == 1 and list(runs[0].glob("events.out.tfevents.*"))  # rank 0's folder only
    assert json.loads((tmp_path / "models" / "metadata.json").read_text())["training"]["config"]["image_size"] == 32
    state = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # the DDP wrapper is not saved
    if name == "omnifm_classification":
        eager_network(bundle, tmp_path / "models" / "model.pt")  # loads into the single-process network
