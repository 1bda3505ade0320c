import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.payload import cluster_tokens, outgoing_payload, spectral_centroids
from omnifm_monai.networks import OmniFMClassifier
from omnifm_monai.strategies import get_strategy


def _three_clusters(n=20, d=8):
    """Unit tokens around three orthogonal directions; sizes n, n and 3."""
    torch.manual_seed(0)
    eye = torch.eye(d)
    parts = [0.1 * torch.randn(n, d) + eye[0], 0.1 * torch.randn(n, d) + eye[1], 0.1 * torch.randn(3, d) - eye[2]]
    return F.normalize(torch.cat(parts), dim=1)


def test_cluster_tokens_recovers_separated_clusters():
    ids = cluster_tokens(_three_clusters(), 3, seed=0)
    assert ids.shape == (43,) and set(ids.tolist()) == {0, 1, 2}
    assert len(set(ids[:20])) == 1 and len(set(ids[20:40])) == 1 and len(set(ids[40:])) == 1


def test_cluster_tokens_never_more_clusters_than_tokens_and_is_seeded():
    tokens = _three_clusters()
    assert sorted(cluster_tokens(tokens[:2], 4).tolist()) == [0, 1]
    np.testing.assert_array_equal(cluster_tokens(tokens, 3, seed=5), cluster_tokens(tokens, 3, seed=5))


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return OmniFMClassifier(in_channels=1, num_classes=3, channels=(8, 8, 16, 16), stem_stride=2)


def test_centroids_per_label_or_per_cluster(network):
    images = torch.rand(12, 1, 32, 32)
    by_label = spectral_centroids(network, images, np.array([0] * 6 + [2] * 6))
    clustered = spectral_centroids(network, images, None, num_clusters=4, seed=1)
    assert by_label.shape == (2, 64) and 1 <= clustered.shape[0] <= 4 and clustered.shape[1] == 64
    for centroids in (by_label, clustered):
        assert centroids.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)


def test_outgoing_payload_leaves_private_keys_home(network):
    private = get_strategy("omnifm").private_keys(network)
    params, meta = outgoing_payload(network, private, 12, np.zeros((2, 64), np.float32))
    assert not set(params) & private and "psp.private_suffix" not in params
    assert meta[MetaKey.NUM_SAMPLES] == 12 and meta[MetaKey.UPLOAD_BYTES]["spectral"] == 2 * 64 * 4
