"""HarmoFL's weight perturbation: a sharpness-aware (SAM-like) step around the bundle's own optimizer.

Each step: the gradient g at the current weights w (the trainer's backward pass) -> move to
``w + rho * g / ||g||`` -> the gradient there (one more forward and backward on the same batch) ->
back to w -> the base optimizer steps with that second gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["WeightPerturbation", "trainer_loss_closure"]


class WeightPerturbation:
    """Wraps an optimizer; ``step()`` takes the perturbed step. Other attributes are the base optimizer's.

    The wrapper is what ``SupervisedTrainer`` calls (``zero_grad``, ``step``); learning-rate schedulers
    and checkpoint handlers keep the base optimizer, which still holds the parameters and the state.

    Args:
        optimizer: the bundle's optimizer.
        closure: recomputes the loss of the current batch at the current weights (a scalar tensor).
        rho: the perturbation radius ``||w' - w||`` (HarmoFL's ``alpha``), > 0.

    Raises:
        ValueError: ``rho`` is not positive.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, closure: Callable[[], torch.Tensor], rho: float) -> None:
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho!r}.")
        self.optimizer, self.closure, self.rho = optimizer, closure, float(rho)

    def __getattr__(self, name: str) -> Any:  # param_groups, state, state_dict, ...
        optimizer = self.__dict__.get("optimizer")  # absent while copy/pickle rebuild the object
        if optimizer is None:
            raise AttributeError(name)
        return getattr(optimizer, name)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> None:
        """The perturbed step; expects the gradients of the unperturbed loss to be in ``p.grad``."""
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm(2) for p in params]), 2)
            deltas = [p.grad * (self.rho / (norm + 1e-12)) for p in params]
            for p, delta in zip(params, deltas):
                p.add_(delta)  # w + rho * g / ||g||
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            (closure or self.closure)().backward()  # the gradient at the perturbed weights
        with torch.no_grad():
            for p, delta in zip(params, deltas):
                p.sub_(delta)  # back to w
        self.optimizer.step()


def trainer_loss_closure(trainer: SupervisedTrainer) -> Callable[[], torch.Tensor]:
    """The loss of the trainer's current batch (``trainer.state.batch``), recomputed at the current weights."""

    def closure() -> torch.Tensor:
        state = trainer.state
        batch = trainer.prepare_batch(state.batch, state.device, trainer.non_blocking, **trainer.to_kwargs)
        inputs, targets = batch[0], batch[1]
        args, kwargs = (batch[2], batch[3]) if len(batch) == 4 else ((), {})
        pred = trainer.inferer(inputs, trainer.network, *args, **kwargs)
        return trainer.loss_function(pred, targets).mean()

    return closure
