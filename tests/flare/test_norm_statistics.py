"""BatchNorm statistics re-estimated on a site's own data after it receives shared weights."""

import copy
import json
from types import SimpleNamespace

import torch
from monai.engines.utils import default_prepare_batch
from torch import nn

from omnifm_monai.data.federation import build_federation
from omnifm_monai.flare.client import SiteTrainer, parse_args
from omnifm_monai.flare.norm_statistics import recalibrate_norm_statistics
from omnifm_monai.jobs import bundle_root


def _trainer(batches, prepare_batch=default_prepare_batch):
    return SimpleNamespace(data_loader=batches, prepare_batch=prepare_batch, state=SimpleNamespace(device="cpu"),
                           non_blocking=False, to_kwargs={})  # fmt: skip


def test_running_statistics_become_those_of_the_site_data():
    torch.manual_seed(0)
    network = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 2), nn.Dropout(0.5)).eval()
    network[0].running_mean.fill_(100.0)  # stale: another site's (or an old round's) statistics
    weights = copy.deepcopy(network[1].state_dict())
    data = torch.randn(64, 3) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([5.0, -1.0, 0.5])
    batches = [{"image": data[i : i + 16], "label": torch.zeros(16)} for i in range(0, 64, 16)]
    assert recalibrate_norm_statistics(network, _trainer(batches)) == 1
    torch.testing.assert_close(network[0].running_mean, data.mean(0))
    per_batch_var = torch.stack([b["image"].var(0) for b in batches]).mean(0)  # what a cumulative average holds
    torch.testing.assert_close(network[0].running_var, per_batch_var)
    assert network[0].momentum == 0.1 and not network.training  # settings put back
    torch.testing.assert_close(network[1].state_dict()["weight"], weights["weight"])  # no weight changes


def test_extra_network_arguments_and_networks_without_batchnorm():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(2)

        def forward(self, image, question):
            return self.norm(image + question)

    def prepare(batch, device, non_blocking, **kwargs):  # like the VQA bundle's: (inputs, targets, args, kwargs)
        return batch["image"], batch["label"], (batch["question"],), {}

    network = TwoInputs()
    batch = {"image": torch.ones(4, 2), "question": torch.full((4, 2), 2.0), "label": torch.zeros(4)}
    assert recalibrate_norm_statistics(network, _trainer([batch], prepare)) == 1
    torch.testing.assert_close(network.norm.running_mean, torch.full((2,), 3.0))
    assert recalibrate_norm_statistics(nn.Linear(2, 2), _trainer([batch])) == 0


def test_a_site_with_the_option_recalibrates_on_receive(tmp_path):
    federation = build_federation("cross_modality_hard", 2, seed=0, image_size=32, samples_per_client=30)
    federation.client("site-1").save_npz(tmp_path / "site-1.npz")
    args = parse_args(
        ["--bundle-root", str(bundle_root("classification")), "--strategy", "fedbn",
         "--strategy-options", json.dumps({"recalibrate_norms": True}), "--dataset-dir", str(tmp_path / "site-1.npz"),
         "--num-classes", str(federation.num_classes), "--image-size", "32", "--site-dir", str(tmp_path / "site")]
    )  # fmt: skip
    site = SiteTrainer(args, "site-1")
    norms = [m for m in site.network.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.running_mean.fill_(50.0)
    site.receive({}, {})
    assert all(m.running_mean.abs().max() < 50.0 for m in norms)
