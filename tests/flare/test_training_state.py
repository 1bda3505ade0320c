"""A site restarted between rounds trains exactly as one that kept running (optimizer, counters, random streams)."""

import pytest
import torch

from omnifm_monai.flare.client import SiteTrainer
from omnifm_monai.flare.site_state import PrivateStateStore
from omnifm_monai.flare.training_state import restore_training_state, training_state


@pytest.fixture
def make_site(phantom_site_file, classification_site):
    """Factory ``(site_dir, strategy="omnifm") -> SiteTrainer`` of site-1 of the 16 px phantom."""
    path, num_classes = phantom_site_file(image_size=16, samples=24)
    return lambda site_dir, strategy="omnifm": classification_site(
        path, num_classes, site_dir, strategy=strategy, image_size=16
    )


def _round(site: SiteTrainer, global_params: dict) -> dict:
    """One client round as main() runs it: receive, train, build the payload, save the training state."""
    site.receive(global_params, {})
    site.train()
    params, _ = site.payload()
    site.save_training_state()
    return {k: torch.as_tensor(v).clone() for k, v in params.items()}


def test_a_restarted_site_trains_round_two_bit_for_bit_like_an_uninterrupted_one(make_site, tmp_path):
    torch.manual_seed(0)
    running = make_site(tmp_path / "running")
    start = {k: v.clone() for k, v in running.network.state_dict().items()}
    round_one = _round(running, start)
    uninterrupted = _round(running, round_one)  # the same process, the optimizer and RNG streams carry over

    torch.manual_seed(0)
    first = make_site(tmp_path / "restarted")
    torch.testing.assert_close(_round(first, start), round_one, rtol=0, atol=0)
    del first
    torch.manual_seed(123)  # a restarted process starts from other random states: they must be restored
    again = make_site(tmp_path / "restarted")
    assert again.trainer.state.epoch == 1 and again.trainer.optimizer.state  # counters and AdamW moments back
    restarted = _round(again, round_one)
    torch.testing.assert_close(restarted, uninterrupted, rtol=0, atol=0)


def test_without_the_training_state_a_restart_trains_differently(make_site, tmp_path):
    torch.manual_seed(0)
    running = make_site(tmp_path / "running")
    start = {k: v.clone() for k, v in running.network.state_dict().items()}
    round_one = _round(running, start)
    uninterrupted = _round(running, round_one)
    (tmp_path / "running" / "private_omnifm_training.pt").unlink()  # what the restart would otherwise lose
    fresh = _round(make_site(tmp_path / "running"), round_one)
    assert any(not torch.equal(fresh[k], uninterrupted[k]) for k in uninterrupted)


def test_a_saved_state_of_another_optimizer_is_refused_with_one_line(make_site, tmp_path):
    site = make_site(tmp_path / "site")
    state = training_state(site.trainer)
    PrivateStateStore(tmp_path / "state.pt").write(state)
    assert restore_training_state(site.trainer, PrivateStateStore(tmp_path / "state.pt").read())
    site.trainer.optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    with pytest.raises(ValueError, match="parameter groups of sizes"):
        restore_training_state(site.trainer, state)
    assert not restore_training_state(site.trainer, {})
