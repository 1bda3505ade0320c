import numpy as np
import pytest
import torch

from omnifm_monai import PrototypeMemory, is_private_key


def test_empty_bank_returns_no_prototypes():
    memory = PrototypeMemory(token_dim=4, capacity=8, top_k=3)
    assert memory(torch.rand(2, 4)).shape == (2, 0, 4)


def test_top_k_by_cosine():
    # Prepare: bank of the 4 unit axes; query close to axis 2 then axis 0
    memory = PrototypeMemory(token_dim=4, capacity=8, top_k=2)
    memory.set_prototypes(np.eye(4))
    query = torch.nn.functional.normalize(torch.tensor([[0.5, 0.0, 1.0, 0.1]]), dim=-1)
    # Execute
    s_g = memory(query)
    # Assert
    assert s_g.shape == (1, 2, 4)
    torch.testing.assert_close(s_g[0], torch.eye(4)[[2, 0]])


def test_capacity_and_state():
    memory = PrototypeMemory(token_dim=2, capacity=3, top_k=5)
    memory.set_prototypes(np.ones((10, 2)))
    assert memory.num_prototypes == 3
    assert memory(torch.rand(1, 2)).shape == (1, 3, 2)
    assert all(is_private_key(k) for k in memory.state_dict())
    restored = PrototypeMemory(token_dim=2, capacity=3)
    restored.load_state_dict(memory.state_dict())
    assert restored.num_prototypes == 3


def test_bad_prototypes_leave_the_bank_unchanged():
    memory = PrototypeMemory(token_dim=2, capacity=3)
    memory.set_prototypes(np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        memory.set_prototypes(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        memory.set_prototypes(np.ones((2, 3)))
    assert memory.num_prototypes == 2
