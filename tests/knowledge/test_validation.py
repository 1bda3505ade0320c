"""as_unit_tokens: the one check of uploaded spectral tokens (the server's and the knowledge base's)."""

from __future__ import annotations

import numpy as np
import pytest

from omnifm_monai.flare.uploads import InvalidUploadError, validate_tokens
from omnifm_monai.knowledge import SpectralKnowledgeBase, as_unit_tokens


def test_unit_rows_come_back_as_float32():
    # Prepare
    tokens = np.array([[3.0, 4.0], [0.0, 2.0]])

    # Execute
    unit = as_unit_tokens(tokens, 2, max_rows=2)

    # Assert
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 1.0]])


def test_a_flood_is_refused_before_anything_is_converted():
    with pytest.raises(ValueError, match=r"^3 spectral tokens uploaded; at most 2 are accepted\.$"):
        as_unit_tokens([[1.0], [1.0], ["not a number"]], 1, max_rows=2, name="spectral tokens")


@pytest.mark.parametrize("value, match", [(np.float32(1.0), r"expected \(N, 2\)"), (np.zeros((1, 2)), "norm")])
def test_scalars_and_zero_rows_are_named(value, match):
    with pytest.raises(ValueError, match=match):
        as_unit_tokens(value, 2, max_rows=4)


def test_server_and_knowledge_base_give_the_same_reasons():
    tokens = np.full((1, 4), np.nan)
    with pytest.raises(ValueError) as from_base:
        SpectralKnowledgeBase(4).add(tokens, "ct", 0)
    with pytest.raises(InvalidUploadError) as from_server:
        validate_tokens(tokens, 4, max_tokens=8)
    assert str(from_base.value).replace("vectors", "spectral tokens") == str(from_server.value)
    with pytest.raises(ValueError, match="max_upload=1"):
        SpectralKnowledgeBase(4, max_upload=1).add(np.ones((2, 4)), "ct", 0)
