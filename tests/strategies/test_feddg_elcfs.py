"""FedDG-ELCFS: the frequency-space interpolation, the upload, and the server's amplitude bank."""

import numpy as np
import pytest
import torch

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.spectral_augment import interpolate_low_band, low_band_amplitude, low_band_slices
from omnifm_monai.strategies import AmplitudeBank, FedDGELCFS, get_strategy
from omnifm_monai.strategies.feddg_elcfs import AmplitudeInterpolation

COSINE = torch.cos(torch.arange(4) * torch.pi / 2).expand(4, 4)  # (H, W): frequency +-1 along W, zero mean


def test_window_is_centred_with_2b_plus_1_bins():
    assert low_band_slices((4, 4), 0.0) == (slice(2, 3), slice(2, 3))  # the zero frequency of the shifted spectrum
    assert low_band_slices((64, 32), 0.1) == (slice(29, 36), slice(13, 20))  # b = floor(32 * 0.1) = 3
    with pytest.raises(ValueError, match="band_ratio"):
        low_band_slices((4, 4), 0.5)


def test_interpolation_mixes_the_low_band_by_the_ratio_and_keeps_the_phase():
    # Prepare: two 4x4 images, mean +1 and -1 (zero-frequency amplitude 16, phase 0 and pi) plus a cosine
    images = torch.stack([1 + COSINE, -1 + COSINE]).unsqueeze(1)  # (2, 1, 4, 4)
    other = torch.full((2, 1, 1, 1), 32.0)  # the other site's zero-frequency amplitude
    # Execute: lam = 0.25 -> amplitude 0.75 * 16 + 0.25 * 32 = 20, i.e. a mean of 20 / 16 = 1.25
    mixed = interpolate_low_band(images, other, 0.25, band_ratio=0.0)
    # Assert: the sign of the mean (the phase) and the cosine (outside the band) are kept
    torch.testing.assert_close(mixed[0, 0], 1.25 + COSINE)
    torch.testing.assert_close(mixed[1, 0], -1.25 + COSINE)
    torch.testing.assert_close(low_band_amplitude(images, 0.0).reshape(-1), torch.tensor([16.0, 16.0]))


def test_ratio_zero_keeps_and_ratio_one_swaps_the_band():
    images = (1 + COSINE).reshape(1, 1, 4, 4)
    zero = torch.zeros(1, 1, 3, 3)  # b = floor(4 * 0.25) = 1: frequencies -1, 0, +1 in each dim
    torch.testing.assert_close(interpolate_low_band(images, zero, 0.0, band_ratio=0.25), images)
    # all of the image's energy is in the 3x3 window: swapping in zero amplitudes leaves nothing
    torch.testing.assert_close(interpolate_low_band(images, zero, 1.0, band_ratio=0.25), torch.zeros_like(images))
    with pytest.raises(ValueError, match="other_band must have shape"):
        interpolate_low_band(images, torch.zeros(1, 1, 1, 1), 0.5, band_ratio=0.25)


def test_the_trainer_batch_is_interpolated_only_with_a_bank_and_extra_items_pass_through():
    # Prepare: a VQA-like prepare_batch (image, label, (question,), {})
    question = torch.tensor([[3, 4]])

    def prepare(batch, device=None, non_blocking=False, **kwargs):
        return batch["image"], batch["label"], (question,), {}

    augment = AmplitudeInterpolation(prepare, band_ratio=0.0, probability=1.0)
    image = (2 + COSINE).reshape(1, 1, 4, 4)  # range [1, 3]
    batch = {"image": image, "label": torch.tensor([1])}
    # Execute / Assert: no bank yet (the first round): unchanged
    assert augment(batch)[0] is image
    augment.set_bank(np.full((1, 1, 1, 1), 48.0, np.float32))  # zero-frequency amplitude of a mean-3 image
    torch.manual_seed(0)
    out, label, args, kwargs = augment(batch)
    # mean between 2 and 3 (lam in [0, 1]), clipped to the image's own range; question and label untouched
    assert 2.0 <= float(out.mean()) <= 3.0 and float(out.min()) >= 1.0 and float(out.max()) <= 3.0
    assert args[0] is question and torch.equal(label, torch.tensor([1]))
    augment.set_bank(np.zeros((0, 1, 1, 1), np.float32))
    assert augment.bank is None


def test_upload_meta_is_a_fixed_eighth_of_the_images_low_band():
    # Prepare: 16 constant images, image i has value i -> zero-frequency amplitude 16 * i on 4x4
    images = torch.arange(16.0).reshape(16, 1, 1, 1).expand(16, 1, 4, 4)  # (N, C, H, W)
    strategy = get_strategy("feddg_elcfs")
    # Execute
    upload = strategy.upload_meta(None, None, images, seed=3)[MetaKey.AMPLITUDE_SPECTRA]
    # Assert: floor(16 / 8) = 2 spectra, (M, C, 1, 1) at band_ratio 0.003 on 4 px, the same ones every round
    assert upload.shape == (2, 1, 1, 1) and upload.dtype == np.float32
    assert set((upload.reshape(-1) / 16).round().astype(int)) <= set(range(16))
    np.testing.assert_array_equal(upload, strategy.upload_meta(None, None, images, seed=3)[MetaKey.AMPLITUDE_SPECTRA])
    with pytest.raises(ValueError, match="spectra_fraction"):
        FedDGELCFS(spectra_fraction=0.0)


def _core():
    return ServerCore(get_strategy("feddg_elcfs"), {"w": np.zeros(2, np.float32)}, private_keys=())


def _meta(spectra):
    return {MetaKey.NUM_SAMPLES: 4, MetaKey.AMPLITUDE_SPECTRA: spectra}


def test_server_checks_counts_and_redistributes_the_spectra():
    # Prepare
    core = _core()
    assert isinstance(core._aggregator, AmplitudeBank)
    assert MetaKey.AMPLITUDE_BANK not in core.payload("site-1")[1]  # nothing uploaded yet
    # Execute: site-1 sends 2 spectra (2, 1, 3, 3) = 72 bytes, site-2 3 spectra
    core.submit("site-1", {"w": np.ones(2)}, _meta(np.ones((2, 1, 3, 3), np.float32)))
    core.submit("site-2", {"w": np.ones(2)}, _meta(np.full((3, 1, 3, 3), 2.0, np.float32)))
    record = core.close_round(["site-1", "site-2"])
    # Assert: bytes per site counted as spectral; each site gets only the other's spectra
    assert record["accepted"]["site-1"]["spectral_bytes"] == 2 * 9 * 4
    assert record["accepted"]["site-2"]["spectral_bytes"] == 3 * 9 * 4
    bank_1 = core.payload("site-1")[1][MetaKey.AMPLITUDE_BANK]
    bank_2 = core.payload("site-2")[1][MetaKey.AMPLITUDE_BANK]
    assert bank_1.shape == (3, 1, 3, 3) and np.all(bank_1 == 2.0)
    assert bank_2.shape == (2, 1, 3, 3) and np.all(bank_2 == 1.0)


@pytest.mark.parametrize(
    "spectra, message",
    [
        (None, "needs omnifm_amplitude_spectra"),
        (np.full((1, 1, 1, 1), np.nan, np.float32), "NaN or Inf"),
        (-np.ones((1, 1, 1, 1), np.float32), "negative"),
        (np.ones((257, 1, 1, 1), np.float32), "1 to 256 rows"),
        (np.ones((1, 1, 2, 2), np.float32), "must be odd"),
        (np.ones((1, 1, 35, 35), np.float32), "at most 33"),
        (np.ones((4,), np.float32), r"\(M, C, \*W\)"),
        (np.ones((1, 1, 3, 3), np.float32), r"the other sites sent \(1, 1, 1\)"),
    ],
)
def test_server_rejects_bad_spectra(spectra, message):
    core = _core()
    core.submit("site-2", {"w": np.ones(2)}, _meta(np.ones((1, 1, 1, 1), np.float32)))
    with pytest.raises(InvalidUploadError, match=message):
        core.submit("site-1", {"w": np.ones(2)}, _meta(spectra))
    assert "site-1" in core._rejected and "site-1" not in core._accepted


def test_the_bank_sent_is_capped():
    bank = AmplitudeBank(max_bank=4)
    bank.accept("site-2", {}, weight=1.0, round_num=0, meta=_meta(np.arange(10.0).reshape(10, 1, 1, 1)))
    sent = bank.outgoing_meta("site-1")[MetaKey.AMPLITUDE_BANK]
    assert sent.reshape(-1).tolist() == [0.0, 3.0, 6.0, 9.0]  # evenly spread over the rows
    assert bank.outgoing_meta("site-2") == {}
