"""A site's private state on disk: checksum, finite check, clear errors naming the file (issue 17 item 4)."""

import pytest
import torch
from torch import nn

from omnifm_monai.flare.site_state import CHECKSUM_KEY, PrivateStateStore, state_digest

PRIVATE = {"private_suffix"}


class _Net(nn.Module):
    def __init__(self, value: float = 0.0) -> None:
        super().__init__()
        self.private_suffix = nn.Parameter(torch.full((1, 4), value))
        self.shared = nn.Linear(2, 2)


def _saved(tmp_path, value=1.5):
    store = PrivateStateStore(tmp_path / "site" / "private_omnifm.pt")
    store.save(_Net(value), PRIVATE)
    return store


def test_round_trip_restores_only_the_private_keys(tmp_path):
    # Prepare
    store = _saved(tmp_path)
    net = _Net(0.0)
    shared_before = net.shared.weight.detach().clone()
    # Execute
    restored = store.load_into(net)
    # Assert: c is back at 1.5, the shared layer untouched; the file keeps {key: tensor} plus its checksum
    assert restored == ["private_suffix"]
    torch.testing.assert_close(net.private_suffix.detach(), torch.full((1, 4), 1.5))
    torch.testing.assert_close(net.shared.weight.detach(), shared_before)
    assert set(torch.load(store.path, weights_only=True)) == {"private_suffix", CHECKSUM_KEY}


def test_a_missing_file_starts_fresh(tmp_path):
    # deleting the file is the operator's way to start the site fresh (docs/running.md)
    assert PrivateStateStore(tmp_path / "none.pt").load_into(_Net()) == []


def test_a_truncated_file_is_named(tmp_path):
    store = _saved(tmp_path)
    with open(store.path, "rb+") as f:
        f.truncate(40)
    with pytest.raises(ValueError, match=r"private_omnifm\.pt is unreadable"):  # main: OSError [Errno 22]
        store.load_into(_Net())


def test_a_flipped_byte_fails_the_checksum(tmp_path):
    # Prepare: flip one byte inside the stored float data of c (1.5 = 0x3fc00000)
    store = _saved(tmp_path)
    data = bytearray(open(store.path, "rb").read())
    at = data.find(bytes.fromhex("0000c03f"))
    data[at + 1] ^= 0x01
    open(store.path, "wb").write(bytes(data))
    # Execute / Assert
    with pytest.raises(ValueError, match=r"private_omnifm\.pt fails its SHA-256 checksum"):
        store.load_into(_Net())


def test_an_empty_file_is_not_a_fresh_start(tmp_path):
    path = tmp_path / "private_omnifm.pt"
    torch.save({}, path)  # main: loaded silently, the site restarted from scratch
    with pytest.raises(ValueError, match="private_omnifm.pt holds neither entries nor a checksum"):
        PrivateStateStore(path).load_into(_Net())


def test_nan_is_never_saved_nor_loaded(tmp_path):
    # save refuses NaN and keeps the last good file
    store = _saved(tmp_path, value=1.5)
    with pytest.raises(ValueError, match="refusing to save NaN"):
        store.save(_Net(float("nan")), PRIVATE)
    assert store.read()["private_suffix"][0, 0] == 1.5
    # a file with NaN and a valid checksum (written by hand) is refused on loading
    state = {"private_suffix": torch.full((1, 4), float("nan"))}
    digest = torch.tensor(list(bytes.fromhex(state_digest(state))), dtype=torch.uint8)
    torch.save({**state, CHECKSUM_KEY: digest}, store.path)
    with pytest.raises(ValueError, match="holds NaN/Inf"):
        store.load_into(_Net())


def test_a_file_without_checksum_from_an_older_version_still_loads(tmp_path, caplog):
    path = tmp_path / "private_omnifm.pt"
    torch.save({"private_suffix": torch.full((1, 4), 2.0)}, path)
    net = _Net()
    assert PrivateStateStore(path).load_into(net) == ["private_suffix"]
    assert net.private_suffix[0, 0] == 2.0 and "no checksum" in caplog.text


def test_a_strategy_without_private_keys_saves_and_loads_nothing(tmp_path):
    store = PrivateStateStore(tmp_path / "private_fedavg.pt")
    store.save(_Net(), set())
    assert store.load_into(_Net()) == []
