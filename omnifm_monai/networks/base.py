"""The OmniFM spectral path every task network shares: tokenizer, prototype memory, ECA and PSP.

A task network (classifier, U-Net, super-resolution, ...) subclasses :class:`OmniFMNetwork`, calls
:meth:`OmniFMNetwork.build_spectral_path` in its ``__init__`` with the width ``d`` of its embedding,
and in ``forward`` passes the image and its backbone tokens r (B, L, d) through
:meth:`OmniFMNetwork.prompt_sequence` ([Z || r || c]). Dense tasks read the modulated tokens back at
r's positions with :meth:`OmniFMNetwork.token_positions` and continue their decoder from them.

Conventions every task network follows, because the federated pipeline relies on them:

- the task-specific output layer is the attribute ``task_head`` (:data:`TASK_HEAD`): FedPer and
  OmniFM keep it at the site;
- the private suffix c is ``psp.private_suffix`` (a key part starting with ``private``);
- every constructor argument is stored under its own name (NVFlare's job export reads them back);
  the spectral-path hyperparameters come as one :class:`SpectralPathOptions` (``spectral_options``),
  readable as ``token_dim``, ``cutoff``, ``top_k``, ``memory_capacity`` and ``num_heads``
  (and ``freeze_tokenizer``);
- ``spectral=False, prompt=False`` gives the plain backbone the baselines use.
"""

from __future__ import annotations

import torch
from torch import nn

from omnifm_monai.blocks import EmbeddingCrossAttention, PrefixSuffixPrompt, PrototypeMemory, class_codes
from omnifm_monai.losses.spalign import spalign_loss
from omnifm_monai.networks.spectral_options import SpectralOptionsLike, SpectralPathOptions
from omnifm_monai.spectral import SpectralTokenizer

__all__ = ["OmniFMNetwork", "TASK_HEAD"]

TASK_HEAD = "task_head"
"""Attribute name of every OmniFM network's task-specific output layer."""


def _option_field(name: str, doc: str) -> property:
    """A read-only property returning ``spectral_options.<name>``."""
    return property(lambda self: getattr(self.spectral_options, name), doc=f"{doc} (``spectral_options.{name}``)")


class OmniFMNetwork(nn.Module):
    """Base class: the spectral path (optional) and the prompt (optional) around a backbone embedding.

    Attributes:
        last_token: s (B, d_s) of the last forward pass with the spectral path (``None`` before one).
        last_prototypes: the prototypes S_g (B, K, d_s) retrieved for it. Both are what :meth:`spalign_term`
            (and so :class:`~omnifm_monai.losses.OmniFMLoss`) reads; they are plain attributes, not state.
    """

    spectral: bool
    prompt: bool
    spectral_options: SpectralPathOptions

    # the options' fields, readable under their own names (as the constructors stored them before)
    token_dim = _option_field("token_dim", "d_s, the width of the spectral token.")
    cutoff = _option_field("cutoff", "Low-pass cutoff of the tokenizer.")
    top_k = _option_field("top_k", "Prototypes retrieved per sample.")
    memory_capacity = _option_field("memory_capacity", "Prototypes the site's bank can hold.")
    num_heads = _option_field("num_heads", "Heads of the ECA and of the network's attention blocks.")

    def set_spectral_options(self, options: SpectralOptionsLike) -> SpectralPathOptions:
        """Store ``options`` (an instance, a mapping or None) as ``spectral_options`` and return it."""
        self.spectral_options = SpectralPathOptions.coerce(options)
        return self.spectral_options

    def build_spectral_path(self, spatial_dims: int, hidden_size: int, *, spectral: bool, prompt: bool) -> None:
        """Create ``tokenizer``, ``spectral_memory``, ``eca`` (with ``spectral``) and ``psp``.

        Reads its hyperparameters from ``spectral_options`` (:meth:`set_spectral_options` first).
        """
        options = self.spectral_options
        self.spectral, self.prompt = spectral, prompt
        if spectral:
            self.tokenizer = SpectralTokenizer(
                spatial_dims=spatial_dims, token_dim=options.token_dim, cutoff=options.cutoff
            )
            self.tokenizer.requires_grad_(not options.freeze_tokenizer)
            self.spectral_memory = PrototypeMemory(
                options.token_dim, capacity=options.memory_capacity, top_k=options.top_k
            )
            self.eca = EmbeddingCrossAttention(hidden_size, options.token_dim, num_heads=options.num_heads)
        self.psp = PrefixSuffixPrompt(hidden_size, use_prefix=spectral, use_suffix=prompt)
        # the last forward's token s (B, d_s) and prototypes S_g (B, K, d_s), read by spalign_term()
        self.last_token: torch.Tensor | None = None
        self.last_prototypes: torch.Tensor | None = None

    def spectral_token(self, image: torch.Tensor) -> torch.Tensor:
        """s (B, d_s) of the network's input image (B, C, *S): what a site summarises for the server."""
        if not self.spectral:
            raise RuntimeError("spectral_token() needs a network built with spectral=True.")
        return self.tokenizer(image)

    def set_prototypes(self, prototypes, labels=None) -> None:
        """Load the prototypes (P, d_s) the server retrieved for this site, and their class ids (P,) or None."""
        if not self.spectral:
            raise RuntimeError("set_prototypes() needs a network built with spectral=True.")
        self.spectral_memory.set_prototypes(prototypes, labels)

    def prompt_sequence(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """image (B, C, *S), r (B, L, d) -> [Z || r || c] (B, L', d); ``Z = ECA(r, [s || S_g])``.

        The site's own token s is part of the context so the tokenizer also learns from the task
        loss (SPAlign alone would let every token collapse onto the prototypes' mean). A labelled
        prototype enters the context with its class's fixed code added (label-aware prototypes).
        """
        prefix = tokens
        if self.spectral:
            token = self.tokenizer(image)  # (B, d_s)
            prototypes, labels = self.spectral_memory.retrieve(token)  # (B, K, d_s), (B, K)
            tagged = prototypes  # SPAlign below aligns s with the untagged prototypes
            if bool((labels >= 0).any()):  # label-aware prototypes: each tagged with its class's code
                tagged = prototypes + class_codes(labels, self.token_dim).to(prototypes)  # (B, K, d_s)
            context = torch.cat([token.unsqueeze(1), tagged], dim=1)  # (B, 1 + K, d_s)
            prefix = self.eca(tokens, context)  # (B, L, d)
            self.last_token, self.last_prototypes = token, prototypes
        return self.psp(prefix, tokens)

    def token_positions(self, sequence: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """The positions of r in a (mixed) prompt sequence (B, L', d) -> (B, L, d)."""
        start = num_tokens if self.spectral else 0
        return sequence[:, start : start + num_tokens]

    def spalign_term(self) -> torch.Tensor:
        """SPAlign of the last forward pass: ``spalign_loss(last_token, last_prototypes)``.

        0 without the spectral path or before any forward (kept in the graph through the task head).
        """
        if self.last_token is None or self.last_prototypes is None:
            return sum(p.sum() for p in getattr(self, TASK_HEAD).parameters()) * 0.0
        return spalign_loss(self.last_token, self.last_prototypes)
