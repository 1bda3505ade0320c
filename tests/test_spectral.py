import pytest
import torch

from omnifm_monai import SpectralTokenizer
from omnifm_monai.data.phantom import generate_anatomy, render
from omnifm_monai.spectral import log_amplitude_spectrum, low_pass_crop


@pytest.mark.parametrize(
    "spatial_dims, shape",
    [
        (2, (3, 1, 64, 64)),
        (2, (2, 3, 28, 28)),
        (2, (2, 1, 40, 52)),
        (3, (2, 1, 16, 16, 16)),
        (3, (1, 3, 8, 12, 10)),
    ],
)
def test_tokenizer_shapes_norm_and_gradients(spatial_dims, shape):
    tokenizer = SpectralTokenizer(spatial_dims=spatial_dims, token_dim=32)
    x = torch.rand(shape, requires_grad=True)
    s = tokenizer(x)
    assert s.shape == (shape[0], 32)
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(shape[0]))
    s.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tokenizer.parameters())


def test_grey_and_rgb_of_the_same_image_share_a_token():
    tokenizer = SpectralTokenizer(token_dim=16)
    grey = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(tokenizer(grey), tokenizer(grey.repeat(1, 3, 1, 1)))


def test_global_intensity_scale_does_not_change_the_token():
    tokenizer = SpectralTokenizer(token_dim=16)
    x = torch.rand(2, 1, 32, 32) + 0.1
    torch.testing.assert_close(tokenizer(x), tokenizer(3.0 * x), atol=1e-4, rtol=1e-4)


def test_low_pass_keeps_centred_box():
    spectrum = torch.zeros(1, 1, 64, 64)
    assert low_pass_crop(spectrum, 0.25).shape == (1, 1, 17, 17)
    assert low_pass_crop(spectrum, 1.0).shape == (1, 1, 64, 64)
    centre = log_amplitude_spectrum(torch.ones(1, 1, 8, 8))[0, 0]
    assert centre.argmax() == 4 * 8 + 4  # DC at the centre after the shift


def test_token_moves_less_for_texture_than_for_anatomy():
    # Prepare: the same phantom anatomy with high-frequency noise added, and different anatomies
    torch.manual_seed(0)
    tokenizer = SpectralTokenizer(token_dim=64)
    images = torch.as_tensor(render(generate_anatomy(32, image_size=64, seed=1), "CT", seed=1))
    other = torch.as_tensor(render(generate_anatomy(32, image_size=64, seed=2), "CT", seed=1))
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(3))
    textured = images + 0.1 * noise
    # Execute
    with torch.no_grad():
        s, s_textured, s_other = tokenizer(images), tokenizer(textured), tokenizer(other)
    texture_shift = (s - s_textured).norm(dim=-1).mean()
    anatomy_shift = (s - s_other).norm(dim=-1).mean()
    # Assert: noise of this size changes pixels a lot (std 0.1) but the token much less than anatomy
    assert (images - textured).abs().mean() > 0.05
    assert texture_shift < 0.5 * anatomy_shift


def test_texture_above_the_cutoff_leaves_the_token_unchanged():
    tokenizer = SpectralTokenizer(token_dim=64, cutoff=0.1)
    images = torch.as_tensor(render(generate_anatomy(8, image_size=64, seed=1), "MR-T2", seed=1))
    grid = torch.arange(64.0)
    stripes = torch.cos(0.8 * torch.pi * grid)[None, :] * torch.cos(0.6 * torch.pi * grid)[:, None]  # (H, W)
    with torch.no_grad():
        shift = (tokenizer(images) - tokenizer(images + 0.2 * stripes)).norm(dim=-1).max()
    assert shift < 0.05


@pytest.mark.parametrize(
    "kwargs", [{"spatial_dims": 1}, {"token_dim": 0}, {"cutoff": 0.0}, {"cutoff": 1.5}, {"grid": 0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SpectralTokenizer(**kwargs)


def test_wrong_input_rank():
    with pytest.raises(ValueError, match="spatial_dims=2"):
        SpectralTokenizer(spatial_dims=2)(torch.rand(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="BCHW"):
        SpectralTokenizer()(torch.rand(8, 8))


def test_torchscript_trace_matches():
    tokenizer = SpectralTokenizer(token_dim=8).eval()
    x = torch.rand(2, 1, 16, 16)
    traced = torch.jit.trace(tokenizer, x)
    torch.testing.assert_close(traced(x), tokenizer(x))
