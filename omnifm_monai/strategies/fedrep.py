"""FedRep (Collins et al., "Exploiting Shared Representations for Personalized Federated Learning", ICML 2021).

The task head stays at the site (as in FedPer); each round trains it first for ``head_epochs`` epochs with
the body frozen, then the body for ``local_epochs`` epochs with the head frozen. Only the body is sent.
The switch is an ignite ``EPOCH_STARTED`` handler on the bundle's own trainer, attached for the round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ignite.engine import Events
from torch import nn

from omnifm_monai.private_state import is_private_key
from omnifm_monai.strategies.base import Strategy
from omnifm_monai.strategies.fedper import TASK_HEAD_KEYS

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["FedRep", "HeadThenBody"]

ROUND_HANDLER = "fedrep_round_handler"  # the trainer attribute holding this round's HeadThenBody


class HeadThenBody:
    """Per epoch of a round: train only the head for the first ``head_epochs``, then only the body.

    A frozen parameter gets ``requires_grad=False`` and its ``.grad`` cleared, so neither the backward pass
    nor the optimizer (weight decay, momentum, Adam's moments: torch skips parameters without a gradient)
    moves it.

    Args:
        network: the site's network.
        head_keys: the head's parameter names.
        head_epochs: epochs of the round that train the head.
        start_epoch: the trainer's epoch count before the round.
    """

    def __init__(self, network: nn.Module, *, head_keys: set[str], head_epochs: int, start_epoch: int) -> None:
        self.network, self.head_keys = network, head_keys
        self.head_epochs, self.start_epoch = head_epochs, start_epoch
        self.phases: list[str] = []  # "head" or "body", one per epoch run (for the logs and the tests)

    def __call__(self, engine) -> None:
        epoch_in_round = engine.state.epoch - self.start_epoch  # 1-based: ignite counts the epoch before the event
        phase = "head" if epoch_in_round <= self.head_epochs else "body"
        for name, param in self.network.named_parameters():
            trainable = (name in self.head_keys) == (phase == "head")
            param.requires_grad_(trainable)
            if not trainable:
                param.grad = None
        self.phases.append(phase)

    def release(self) -> None:
        """Every parameter trainable again (evaluation, the next round, other code)."""
        for param in self.network.parameters():
            param.requires_grad_(True)


@dataclass(frozen=True, kw_only=True)
class FedRep(Strategy):
    """FedRep: private head, head epochs (body frozen) then body epochs (head frozen) each round.

    Args:
        head_epochs: head-only epochs at the start of each round, before the ``local_epochs`` body epochs.

    Raises:
        ValueError: ``head_epochs`` is below 1.
    """

    name: str = "fedrep"
    private_patterns: tuple[str, ...] = (TASK_HEAD_KEYS,)
    head_epochs: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_epochs < 1:
            raise ValueError(f"head_epochs must be >= 1, got {self.head_epochs}.")

    def round_epochs(self, local_epochs: int) -> int:
        return self.head_epochs + local_epochs

    def before_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().before_training(network, trainer)
        self.after_training(network, trainer)  # a handler left by a failed round
        head_keys = {n for n, _ in network.named_parameters() if is_private_key(n, self.private_patterns)}
        if not head_keys:
            raise ValueError(f"fedrep: no parameter of {type(network).__name__} matches {self.private_patterns}.")
        handler = HeadThenBody(
            network, head_keys=head_keys, head_epochs=self.head_epochs, start_epoch=trainer.state.epoch
        )
        trainer.add_event_handler(Events.EPOCH_STARTED, handler)
        setattr(trainer, ROUND_HANDLER, handler)

    def after_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        handler = getattr(trainer, ROUND_HANDLER, None)
        if handler is not None:
            trainer.remove_event_handler(handler, Events.EPOCH_STARTED)
            handler.release()
            setattr(trainer, ROUND_HANDLER, None)
