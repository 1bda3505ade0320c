"""Label-aware prototypes end to end: the site's class ids with its centroids, the knowledge base's labels
column, the server's upload check and payload, the DP filter, and the site's per-class retrieval."""

import numpy as np
import pytest
import torch
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from omnifm_monai import PrototypeMemory
from omnifm_monai.blocks import class_codes
from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.payload import outgoing_payload
from omnifm_monai.flare.privacy import SpectralTokenPrivacy
from omnifm_monai.flare.server_core import ServerCore
from omnifm_monai.flare.uploads import InvalidUploadError
from omnifm_monai.knowledge import SpectralKnowledgeBase
from omnifm_monai.networks import OmniFMClassifier
from omnifm_monai.strategies import get_strategy

LABELLED = get_strategy("omnifm", spectral=True, label_prototypes=True)
INITIAL = {"layer.weight": np.zeros((2, 2), np.float32)}
AXES = np.eye(4, dtype=np.float32)


def _core(**kwargs) -> ServerCore:
    return ServerCore(LABELLED, INITIAL, set(), token_dim=4, **kwargs)


def _upload(tokens, labels=None):
    meta = {MetaKey.NUM_SAMPLES: 3, MetaKey.TOKENS: tokens}
    if labels is not None:
        meta[MetaKey.TOKEN_LABELS] = labels
    return {"layer.weight": np.ones((2, 2), np.float32)}, meta


# ---------------------------------------------------------------- the knowledge base
def test_labels_are_stored_saved_and_loaded(tmp_path):
    kb = SpectralKnowledgeBase(dim=4)
    kb.add(AXES[:2], source="site-1", round_num=0, labels=[0, 1])
    kb.add(AXES[2:3], source="site-2", round_num=0)  # unlabelled
    assert kb.labels.tolist() == [0, 1, -1]
    kb.save(tmp_path / "kb.npz")
    assert SpectralKnowledgeBase.load(tmp_path / "kb.npz").labels.tolist() == [0, 1, -1]
    old = {k: v for k, v in kb.state_dict().items() if k != "labels"}  # a state written before the column
    assert SpectralKnowledgeBase.from_state_dict(old).labels.tolist() == [-1, -1, -1]


@pytest.mark.parametrize(
    "labels, reason", [([0.5, 1.0], "integers"), ([0], "expected 2"), ([0, -1], "class ids"), ("ab", "integers")]
)
def test_bad_labels_are_refused_and_the_base_is_unchanged(labels, reason):
    kb = SpectralKnowledgeBase(dim=4)
    kb.add(AXES[:1], source="site-1", round_num=0, labels=[3])
    with pytest.raises(ValueError, match=reason):
        kb.add(AXES[1:3], source="site-2", round_num=1, labels=labels)
    assert len(kb) == 1 and kb.labels.tolist() == [3]


def test_a_near_duplicate_of_another_class_is_kept():
    # Prepare: a stored class-0 entry; the same direction uploaded as class 0 and as class 1
    kb = SpectralKnowledgeBase(dim=4, duplicate_threshold=0.99)
    kb.add(AXES[:1], source="site-1", round_num=0, labels=[0])
    # Execute
    rows = kb.add(np.stack([AXES[0], AXES[0]]), source="site-2", round_num=1, labels=[0, 1])
    # Assert: class 0 collapses into the stored entry, class 1 is a new entry
    assert rows.tolist() == [0, 1] and len(kb) == 2 and kb.labels.tolist() == [0, 1]


# ---------------------------------------------------------------- the server
def test_the_server_sends_other_sites_prototypes_with_their_classes():
    core = _core()
    core.submit("site-1", *_upload(AXES[:2], np.array([0, 1])))
    core.submit("site-2", *_upload(AXES[2:], np.array([1, 0])))
    core.close_round(["site-1", "site-2"])
    meta = core.payload("site-1")[1]
    # site-1 is sent site-2's rows only, each with the class site-2 gave it
    by_row = {tuple(row): int(c) for row, c in zip(meta[MetaKey.PROTOTYPES], meta[MetaKey.PROTOTYPE_LABELS])}
    assert by_row == {tuple(AXES[2]): 1, tuple(AXES[3]): 0}
    assert meta[MetaKey.PROTOTYPE_LABELS].dtype == np.int64


def test_unlabelled_uploads_send_no_labels():
    core = ServerCore(get_strategy("omnifm", spectral=True), INITIAL, set(), token_dim=4)
    core.submit("site-1", *_upload(AXES[:2]))
    core.submit("site-2", *_upload(AXES[2:]))
    core.close_round(["site-1", "site-2"])
    assert MetaKey.PROTOTYPE_LABELS not in core.payload("site-1")[1]


@pytest.mark.parametrize(
    "labels, reason",
    [(np.array([0.0, 1.0]), "integers"), (np.array([0]), "expected 2"), (np.array([0, -3]), "class ids")],
)
def test_an_upload_with_bad_labels_is_rejected_whole(labels, reason):
    core = _core()
    with pytest.raises(InvalidUploadError, match=reason):
        core.submit("site-1", *_upload(AXES[:2], labels))
    record = core.close_round(["site-1"])
    assert "site-1" in record["rejected"] and len(core.knowledge_base) == 0
    np.testing.assert_array_equal(core.global_params["layer.weight"], 0.0)


def test_the_dp_filter_drops_the_labels():
    dp = SpectralTokenPrivacy(noise_multiplier=5.0, seed=0)
    meta = {MetaKey.TOKENS: AXES[:2], MetaKey.TOKEN_LABELS: np.array([0, 1]), MetaKey.NUM_SAMPLES: 4}
    out = FLModelUtils.from_shareable(dp.process(FLModelUtils.to_shareable(FLModel(params={}, meta=meta)), FLContext()))
    assert MetaKey.TOKEN_LABELS not in out.meta and out.meta[MetaKey.TOKENS].shape == (2, 4)


# ---------------------------------------------------------------- the site
def test_the_strategy_needs_the_spectral_path_and_labels_the_centroid_rows():
    with pytest.raises(ValueError, match="spectral"):
        get_strategy("omnifm", label_prototypes=True)
    # spectral_centroids' rows follow np.unique(groups): classes 2 and 5
    assert LABELLED.spectral_labels(np.array([5, 2, 5, 2, 2])).tolist() == [2, 5]
    assert LABELLED.spectral_labels(None) is None  # a task without image labels: clustered rows
    assert get_strategy("omnifm", spectral=True).spectral_labels(np.array([0, 1])) is None


def test_the_payload_carries_one_label_per_centroid():
    network = torch.nn.Linear(2, 2)
    _, meta = outgoing_payload(network, set(), 5, AXES[:2], token_labels=np.array([0, 1]))
    assert meta[MetaKey.TOKEN_LABELS].tolist() == [0, 1] and meta[MetaKey.TOKEN_LABELS].dtype == np.int64
    assert meta[MetaKey.UPLOAD_BYTES]["spectral"] == 2 * 4 * 4 + 2 * 8


def test_a_sample_gets_the_nearest_prototype_of_every_class():
    # Prepare: class 0 on axes 0 and 1, class 1 on axes 2 and 3; a query nearest axis 0, then axis 3
    memory = PrototypeMemory(token_dim=4, capacity=8, top_k=2)
    memory.set_prototypes(AXES, np.array([0, 0, 1, 1]))
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2, 0.1, 0.5]]), dim=-1)
    # Execute
    prototypes, labels = memory.retrieve(query)
    # Assert: one per class (top_k 2 over 2 classes), each class's nearest: axis 0 and axis 3
    torch.testing.assert_close(prototypes[0], torch.eye(4)[[0, 3]])
    assert labels.tolist() == [[0, 1]]
    # an unlabelled bank keeps the plain top-k: axes 0 and 3 by cosine, labels -1
    memory.set_prototypes(AXES)
    assert memory.retrieve(query)[1].tolist() == [[-1, -1]]


def test_class_codes_are_fixed_unit_vectors_and_zero_without_a_class():
    codes = class_codes(torch.tensor([[0, 1, -1, 0]]), 16)  # (1, 4, 16)
    torch.testing.assert_close(codes[0, 0], codes[0, 3])
    torch.testing.assert_close(codes[0, :2].norm(dim=-1), torch.ones(2))
    assert codes[0, 2].abs().sum() == 0 and not torch.allclose(codes[0, 0], codes[0, 1])
    torch.testing.assert_close(class_codes(torch.tensor([1]), 16)[0], codes[0, 1])  # the same at every site


def test_the_class_of_a_prototype_reaches_the_prediction():
    torch.manual_seed(0)
    net = OmniFMClassifier(num_classes=2, in_channels=1, layers=(1, 1, 1, 1), channels=(8, 8, 16, 16)).eval()
    image = torch.rand(2, 1, 32, 32)
    prototypes = torch.nn.functional.normalize(torch.rand(2, 64), dim=-1).numpy()
    outputs = []
    for labels in (None, np.array([0, 1]), np.array([1, 0])):
        net.set_prototypes(prototypes, labels)
        with torch.no_grad():
            outputs.append(net(image))
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])


def test_a_bank_saved_before_the_labels_loads_unlabelled():
    memory = PrototypeMemory(token_dim=4, capacity=8, top_k=2)
    memory.set_prototypes(AXES, np.array([0, 0, 1, 1]))
    old = {k: v for k, v in memory.state_dict().items() if k != "private_prototype_labels"}
    fresh = PrototypeMemory(token_dim=4, capacity=8, top_k=2)
    fresh.load_state_dict(old, strict=True)
    assert fresh.num_prototypes == 4 and (fresh.private_prototype_labels == -1).all()


# ---------------------------------------------------------------- token collapse, as the server records it
def test_token_cosines_tell_collapsed_uploads_from_spread_ones():
    from omnifm_monai.knowledge import token_cosines

    spread = token_cosines({"site-1": AXES[:2], "site-2": AXES[2:]})
    assert spread == pytest.approx({"within_site": 0.0, "between_sites": 0.0})
    one = np.tile(AXES[:1], (2, 1))
    assert token_cosines({"site-1": one, "site-2": one}) == pytest.approx({"within_site": 1.0, "between_sites": 1.0})
    assert token_cosines({"site-1": AXES[:1]}) == {"within_site": None, "between_sites": None}  # no pair


def test_the_round_history_records_the_token_cosines():
    core = _core()
    core.submit("site-1", *_upload(AXES[:2], np.array([0, 1])))
    core.submit("site-2", *_upload(AXES[:2], np.array([0, 1])))
    record = core.close_round(["site-1", "site-2"])
    assert record["token_cosine"] == pytest.approx({"within_site": 0.0, "between_sites": 1.0})
