"""PSP: the sequence [Z || r || c] with a client-private suffix c."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PrefixSuffixPrompt"]


class PrefixSuffixPrompt(nn.Module):
    """Concatenate the prefix ``Z``, the backbone tokens ``r`` and a learnable suffix ``c``.

    ``c`` (``private_suffix``) is the site's own prompt: its name marks it private
    (see :mod:`omnifm_monai.private_state`), so it is never aggregated and never leaves the site.

    Args:
        hidden_size: d, token width.
        num_suffix_tokens: how many suffix tokens c holds.
        use_prefix: include ``Z``; False gives ``[r || c]`` (ablation without ECA).
        use_suffix: include ``c``; False gives ``[Z || r]`` (ablation without the private prompt).
    """

    def __init__(
        self, hidden_size: int, num_suffix_tokens: int = 1, use_prefix: bool = True, use_suffix: bool = True
    ) -> None:
        super().__init__()
        if hidden_size < 1 or num_suffix_tokens < 1:
            raise ValueError(
                f"hidden_size and num_suffix_tokens must be >= 1, got {hidden_size} and {num_suffix_tokens}."
            )
        self.hidden_size = hidden_size
        self.use_prefix = use_prefix
        self.use_suffix = use_suffix
        self.num_suffix_tokens = num_suffix_tokens if use_suffix else 0
        self.private_suffix = (
            nn.Parameter(torch.randn(1, num_suffix_tokens, hidden_size) * 0.02) if use_suffix else None
        )

    def forward(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """
        Args:
            prefix: Z, (B, L, d) (ignored when ``use_prefix`` is False).
            tokens: r, (B, L, d).

        Returns:
            (B, L' , d) with ``L' = L * (1 + use_prefix) + num_suffix_tokens``; the suffix is last.
        """
        if tokens.ndim != 3 or tokens.shape[-1] != self.hidden_size:
            raise ValueError(f"tokens must be (B, L, {self.hidden_size}), got {tuple(tokens.shape)}.")
        parts = [prefix, tokens] if self.use_prefix else [tokens]
        if self.private_suffix is not None:
            parts.append(self.private_suffix.expand(tokens.shape[0], -1, -1))  # (B, n, d)
        return torch.cat(parts, dim=1)
