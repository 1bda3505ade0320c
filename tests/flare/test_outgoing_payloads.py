"""What leaves a site, inspected in the NVFlare message each strategy's client actually sends."""

import json
from pathlib import Path

import numpy as np
import pytest
from nvflare.apis.dxo import from_shareable
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.strategies import STRATEGIES, norm_layer_keys

DOCUMENTED_META = {
    MetaKey.NUM_SAMPLES,
    MetaKey.UPLOAD_BYTES,
    MetaKey.TOKENS,
    MetaKey.CONTROL_DELTA,
    MetaKey.AMPLITUDE_SPECTRA,
}  # see omnifm_monai/flare/payload.py
IMAGE_SIZE = 32


def _leaves(value):
    """Every scalar or array inside nested dicts/lists of a message."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _sent_message(site):
    """The Shareable the client's ``flare.send`` would hand NVFlare after one local epoch."""
    metrics = site.evaluate()
    metrics["train_seconds"] = site.train()
    params, meta = site.payload()
    return site, FLModelUtils.to_shareable(FLModel(params=params, metrics=metrics, meta=meta))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_only_shared_weights_and_documented_meta_leave_the_site(
    strategy, phantom_site_file, classification_site, tmp_path
):
    # Execute
    site_dir = tmp_path / strategy
    site, shareable = _sent_message(classification_site(*phantom_site_file(IMAGE_SIZE), site_dir, strategy=strategy))
    dxo = from_shareable(shareable)
    sent = FLModelUtils.from_shareable(shareable)
    # Assert: weights: exactly the network's keys minus the strategy's private ones
    state = site.network.state_dict()
    assert set(sent.params or {}) == set(state) - site.private_keys
    assert not any("private" in k for k in sent.params or {}), "the PSP suffix and the prototype bank stay home"
    if strategy in ("fedper", "omnifm", "fedrep", "gpfl"):
        assert not {"task_head.weight", "task_head.bias"} & set(sent.params)
    if strategy == "gpfl":  # CoV and GCE are shared, the conditional inputs are not
        assert {"gpfl.gce.weight", "gpfl.gamma.0.weight"} <= set(sent.params)
    if strategy == "ditto":  # the personal model is a separate file at the site, never in the message
        assert site.strategy.evaluation_network(site.network, site.trainer) is not site.network
        assert (site_dir / "personalized_model.pt").is_file()
    if strategy == "moon":  # the previous local model stays in the site's folder
        assert (site_dir / "moon_previous.pt").is_file()
    if strategy in ("fedbn", "omnifm"):
        assert not norm_layer_keys(site.network) & set(sent.params)
    if strategy == "local":
        assert not sent.params
    record = json.loads((site_dir / "models" / "metadata.json").read_text())["training"]
    assert record["strategy"] == strategy  # the site's checkpoint says how it was trained
    for key, value in (sent.params or {}).items():  # no image-shaped array hides among the weights
        assert np.asarray(value).shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE), key
    # meta: only documented keys; tokens are a few per-class centroids, never one per image
    ours = {k for k in sent.meta if k.startswith("omnifm_")}
    assert ours <= DOCUMENTED_META, ours - DOCUMENTED_META
    tokens = sent.meta.get(MetaKey.TOKENS)
    if STRATEGIES[strategy].spectral:
        assert tokens.dtype == np.float32 and tokens.shape[0] <= 3 < site.num_train and tokens.shape[1] == 64
    else:
        assert tokens is None
    assert sent.meta[MetaKey.NUM_SAMPLES] == site.num_train
    # SCAFFOLD alone sends its control-variate delta: one float32 array per shared trainable parameter
    delta = sent.meta.get(MetaKey.CONTROL_DELTA)
    if strategy == "scaffold":
        parameters = dict(site.network.named_parameters())
        assert set(delta) == set(parameters) - site.private_keys
        for key, value in delta.items():
            assert value.dtype == np.float32 and value.shape == tuple(parameters[key].shape), key
        assert any(np.abs(v).max() > 0 for v in delta.values())  # one epoch of training moved c_i
        assert sent.meta[MetaKey.UPLOAD_BYTES]["control"] == sum(v.nbytes for v in delta.values())
        assert Path(site.strategy_state_path).name == "private_scaffold_strategy.pt"
        assert Path(site.strategy_state_path).is_file()  # c_i stays on the site's disk
    else:
        assert delta is None and sent.meta[MetaKey.UPLOAD_BYTES]["control"] == 0
    spectra = sent.meta.get(MetaKey.AMPLITUDE_SPECTRA)  # FedDG-ELCFS only: low-band amplitudes of 1/8 of the images
    if strategy == "feddg_elcfs":
        assert spectra.dtype == np.float32 and spectra.shape == (site.num_train // 8, site.train_images.shape[1], 1, 1)
        assert sent.meta[MetaKey.UPLOAD_BYTES]["spectral"] == spectra.nbytes
    else:
        assert spectra is None
    # nothing textual leaves: no file name, DICOM tag or label name in meta or metrics
    for value in _leaves([dxo.meta, sent.metrics]):
        assert not isinstance(value, (str, bytes)), value
    assert all(isinstance(v, (int, float)) and np.isfinite(v) for v in sent.metrics.values())
