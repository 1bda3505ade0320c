"""OmniFM VQA network: MONAI ResNet image tokens -> ECA/PSP; question tokens -> fusion transformer -> answer head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import TransformerBlock
from torch import nn

from omnifm_monai.networks.backbones import ResNetTokens
from omnifm_monai.networks.base import OmniFMNetwork
from omnifm_monai.networks.spectral_options import SpectralOptionsLike

__all__ = ["OmniFMVQA"]


class OmniFMVQA(OmniFMNetwork):
    """Closed-set visual question answering with the OmniFM spectral path (2D images).

    ``forward(image, question)`` returns answer logits (B, num_answers). Inside:

    1. image encoder: :class:`~omnifm_monai.networks.backbones.ResNetTokens`, MONAI's ResNet (basic
       blocks) without pooling/FC -> tokens r (B, L, d), ``d = channels[-1]``.
    2. spectral path and prompt (:class:`~omnifm_monai.networks.base.OmniFMNetwork`): ECA on r with the
       image's spectral token and the site's prototypes -> [Z || r || c] (B, L', d); c private.
    3. question encoder: word embedding (``<pad>`` = 0) + learned positions + one MONAI
       :class:`~monai.networks.blocks.TransformerBlock` (padding masked) -> q (B, T, d).
    4. fusion: one TransformerBlock over [q || Z || r || c] (padding masked), read out at c (or the mean
       of the unmasked tokens without a suffix), LayerNorm, linear ``task_head`` over the answers.

    With ``spectral=False, prompt=False`` this is a plain ResNet + question transformer baseline.

    Args:
        in_channels: image channels.
        num_answers: size of the answer vocabulary (the federation's ``num_classes``).
        vocab_size: question token ids (``<pad>``/``<unk>`` included).
        max_question_length: T.
        layers: basic blocks per ResNet stage.
        channels: widths of the four stages; d = ``channels[-1]``.
        stem_stride: stride of the first convolution.
        spectral: use the tokenizer, prototype retrieval and ECA.
        prompt: use the private suffix c.
        spectral_options: :class:`~omnifm_monai.networks.SpectralPathOptions` (or a mapping of its
            fields): token_dim, cutoff, top_k, memory_capacity and num_heads (of every attention block).
        dropout_rate: dropout before the answer head.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_answers: int = 2,
        vocab_size: int = 64,
        max_question_length: int = 20,
        layers: Sequence[int] = (1, 1, 1, 1),
        channels: Sequence[int] = (16, 32, 64, 128),
        stem_stride: int = 2,
        spectral: bool = True,
        prompt: bool = True,
        spectral_options: SpectralOptionsLike = None,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if num_answers < 1 or in_channels < 1:
            raise ValueError(f"num_answers and in_channels must be >= 1, got {num_answers} and {in_channels}.")
        if vocab_size < 3 or max_question_length < 1:
            raise ValueError(
                f"vocab_size must be >= 3 (<pad>, <unk>, a word) and max_question_length >= 1, got {vocab_size} "
                f"and {max_question_length}."
            )
        options = self.set_spectral_options(spectral_options)
        num_heads = options.num_heads
        if len(layers) != 4 or len(channels) != 4:
            raise ValueError(f"layers and channels need 4 stages each, got {tuple(layers)} and {tuple(channels)}.")
        hidden = int(channels[-1])
        if hidden % num_heads:
            raise ValueError(f"channels[-1]={hidden} must be divisible by num_heads={num_heads}.")
        # every constructor argument is kept under its own name (NVFlare's job export reads them back)
        self.in_channels, self.num_answers = in_channels, num_answers
        self.vocab_size, self.max_question_length = vocab_size, max_question_length
        self.layers, self.channels, self.stem_stride = list(layers), list(channels), stem_stride
        self.dropout_rate = dropout_rate
        self.backbone = ResNetTokens(
            spatial_dims=2, in_channels=in_channels, layers=layers, channels=channels, stem_stride=stem_stride
        )
        self.build_spectral_path(2, hidden, spectral=spectral, prompt=prompt)
        self.word_embedding = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.question_position = nn.Parameter(torch.zeros(1, max_question_length, hidden))
        nn.init.trunc_normal_(self.question_position, std=0.02)
        self.question_encoder = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads)
        self.fusion = TransformerBlock(hidden_size=hidden, mlp_dim=2 * hidden, num_heads=num_heads)
        self.head_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout_rate)
        self.task_head = nn.Linear(hidden, num_answers)

    def _check_question(self, question: torch.Tensor) -> None:
        if question.ndim != 2 or question.shape[1] > self.max_question_length:
            raise ValueError(
                f"question must be (B, T) token ids with T <= {self.max_question_length}, got {tuple(question.shape)}."
            )

    def question_tokens(self, question: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """question ids (B, T) -> q (B, T, d) and its key mask (B, T), 1 for words, 0 for padding."""
        self._check_question(question)
        question = question.long()
        length = question.shape[1]
        mask = (question != 0).long()  # (B, T)
        mask[:, 0] = 1  # an all-padding question still attends to something (no NaN)
        q = self.word_embedding(question) + self.question_position[:, :length]  # (B, T, d)
        return self.question_encoder(q, attn_mask=mask), mask

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """image (B, C, S, S), question (B, T) int64 -> logits (B, num_answers).

        ``question`` may also be a nested list of ids (as ``verify_net_in_out --extra_forward_args`` gives it).
        """
        if not isinstance(question, torch.Tensor):
            question = torch.as_tensor(question, dtype=torch.long, device=image.device)
        self._check_question(question)
        tokens = self.backbone(image)  # (B, L, d)
        visual = self.prompt_sequence(image, tokens)  # [Z || r || c]: (B, L', d)
        q, q_mask = self.question_tokens(question)  # (B, T, d), (B, T)
        sequence = torch.cat([q, visual], dim=1)  # (B, T + L', d)
        mask = torch.cat([q_mask, q_mask.new_ones(visual.shape[:2])], dim=1)  # (B, T + L')
        fused = self.fusion(sequence, attn_mask=mask)  # (B, T + L', d)
        if self.prompt:
            readout = fused[:, -1]  # the private suffix c: (B, d)
        else:
            weights = mask.unsqueeze(-1).to(fused.dtype)  # (B, T + L', 1)
            readout = (fused * weights).sum(dim=1) / weights.sum(dim=1)  # masked mean: (B, d)
        return self.task_head(self.dropout(self.head_norm(readout)))
