"""SCAFFOLD (Karimireddy et al., ICML 2020): control variates correct the sites' client drift.

Server: the global weights are the sample-weighted mean of the uploads (global step size 1), and
the control variate ``c`` moves by ``(1/N) sum_i delta_c_i`` over the round's accepted sites
(``N``: all sites of the federation). Site ``i``: after every optimizer step its weights move by
``-lr (c - c_i)``; after the round, option II, ``c_i+ = c_i - c + (x - y_i) / (K lr)`` (``x`` the
received weights, ``y_i`` the trained ones, ``K`` the steps). ``c_i`` stays on the site's disk; only
``delta_c_i = c_i+ - c_i`` is sent (``MetaKey.CONTROL_DELTA``); ``c`` comes in ``MetaKey.CONTROL_VARIATE``.

The site's maths is NVFlare's ``PTScaffoldHelper`` (``nvflare.app_opt.pt.scaffold``), driven from an
ignite handler on the bundle's own trainer.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.flare.uploads import InvalidUploadError, validate_upload
from omnifm_monai.strategies.aggregate import VariateMean, optimized_keys
from omnifm_monai.strategies.base import Strategy

if TYPE_CHECKING:
    from monai.engines import SupervisedTrainer

__all__ = ["Scaffold", "ScaffoldAggregator", "ScaffoldCorrection"]

_TRAINER_ATTRIBUTE = "omnifm_scaffold"  # where prepare_trainer leaves the site's ScaffoldCorrection


class ScaffoldCorrection:
    """The site's side: an ignite handler (``ITERATION_COMPLETED``) over NVFlare's ``PTScaffoldHelper``.

    Args:
        network: the site's network (its trainable named parameters get control variates).
    """

    def __init__(self, network: nn.Module) -> None:
        from nvflare.app_opt.pt.scaffold import PTScaffoldHelper

        self.network = network
        self.helper = PTScaffoldHelper()
        self.helper.init(network)  # c and c_i start at zero
        self._round: tuple[dict, dict, nn.Module] | None = None  # (c, c_i, the received model) of this round

    def set_global(self, control: Mapping[str, Any] | None) -> None:
        """The server's ``c`` (``{key: array}``); None keeps the last (zero before the first aggregation)."""
        if control:
            self.helper.load_global_controls({k: torch.as_tensor(np.asarray(v)) for k, v in control.items()})

    def start_round(self) -> None:
        """Before local training: freeze ``c``, ``c_i`` and the received weights ``x`` for this round."""
        c_global, c_local = self.helper.get_params()
        self._round = (c_global, c_local, copy.deepcopy(self.network).eval())

    def __call__(self, engine: Any) -> None:
        """After one optimizer step: ``w -= lr (c - c_i)``."""
        if self._round is None:
            raise RuntimeError("ScaffoldCorrection.start_round() must be called before local training.")
        self.helper.model_update(self.network, _lr(engine.optimizer), self._round[0], self._round[1])

    def end_round(self, optimizer: torch.optim.Optimizer) -> None:
        """After local training: option II's ``c_i`` update (PTScaffoldHelper.terms_update)."""
        if self._round is None:
            raise RuntimeError("ScaffoldCorrection.start_round() must be called before end_round().")
        c_global, c_local, received = self._round
        self.helper.terms_update(self.network, _lr(optimizer), c_global, c_local, received)
        self._round = None

    def delta(self) -> dict[str, np.ndarray]:
        """``{key: c_i+ - c_i}`` of the last round (float32)."""
        return {k: np.asarray(v, np.float32) for k, v in self.helper.get_delta_controls().items()}

    def state(self) -> dict[str, torch.Tensor]:
        """The private ``c_i``, ``{"c_local.<key>": tensor}``."""
        return {f"c_local.{k}": v.clone() for k, v in self.helper.c_local.state_dict().items()}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Restore :meth:`state`'s output.

        Raises:
            ValueError: an entry is not a ``c_local`` of this network's parameters, or has another shape.
        """
        own = self.helper.c_local.state_dict()
        local = {}
        for name, value in state.items():
            key = name.removeprefix("c_local.")
            if key == name or key not in own or tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(f"SCAFFOLD site state entry {name!r} does not match the network's parameters.")
            local[key] = value.detach().cpu().to(own[key].dtype)
        self.helper.c_local.load_state_dict({**own, **local})


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


class ScaffoldAggregator(VariateMean):
    """The weighted mean of the weights, and the server's control variate ``c`` (:attr:`variate`, float64).

    Args:
        num_sites: ``N`` of ``c += (1/N) sum delta_c_i`` (0: the distinct sites accepted so far).
    """

    state_prefix = "c"

    def __init__(self, *, num_sites: int = 0) -> None:
        super().__init__(num_sites=num_sites)
        self._deltas: dict[str, dict[str, np.ndarray]] = {}  # site -> this round's delta_c_i

    def outgoing_meta(self, site: str) -> dict[str, Any]:
        if not self.variate:
            return {}  # c = 0 before the first aggregation
        return {MetaKey.CONTROL_VARIATE: {k: v.astype(np.float32) for k, v in self.variate.items()}}

    def validate_meta(self, site: str, meta: Mapping[str, Any], params: Mapping[str, np.ndarray]) -> dict[str, int]:
        """``MetaKey.CONTROL_DELTA`` must hold exactly the upload's float parameters: shapes, finite floats."""
        shapes = {k: tuple(np.shape(params[k])) for k in optimized_keys(params)}
        delta = meta.get(MetaKey.CONTROL_DELTA)
        if not shapes:
            return {}
        if not isinstance(delta, Mapping):
            raise InvalidUploadError(f"scaffold needs {MetaKey.CONTROL_DELTA} in meta, got {type(delta).__name__}.")
        try:
            arrays = validate_upload(delta, shapes, frozenset())
        except InvalidUploadError as e:
            raise InvalidUploadError(f"{MetaKey.CONTROL_DELTA}: {e}") from e
        if any(a.dtype.kind != "f" for a in arrays.values()):
            raise InvalidUploadError(f"{MetaKey.CONTROL_DELTA} must hold float arrays.")
        return {"control": int(sum(a.nbytes for a in arrays.values()))}

    def add(self, site: str, params: Mapping[str, np.ndarray], weight: float, round_num: int, meta: Mapping) -> None:
        super().add(site, params, weight, round_num, meta)
        delta = meta.get(MetaKey.CONTROL_DELTA) or {}
        self._deltas[site] = {k: np.asarray(v, np.float64) for k, v in delta.items()}

    def aggregate(self, global_params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = self.federation_size
        for key in optimized_keys(global_params):
            total = self.variate.get(key, np.zeros(np.shape(global_params[key])))
            for site in sorted(self._deltas):  # site-name order, as the weights
                if key in self._deltas[site]:
                    total = total + self._deltas[site][key] / n
            self.variate[key] = total
        return super().aggregate(global_params)

    def reset(self) -> None:
        super().reset()
        self._deltas = {}


@dataclass(frozen=True, kw_only=True)
class Scaffold(Strategy):
    """SCAFFOLD, option II; every parameter shared (as FedAvg).

    Args:
        num_sites: ``N`` of the server's ``c`` update (0: the distinct sites accepted so far).
    """

    name: str = "scaffold"
    num_sites: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_sites < 0:
            raise ValueError(f"num_sites must be >= 0, got {self.num_sites!r}.")

    def prepare_trainer(self, trainer: SupervisedTrainer) -> None:
        from ignite.engine import Events

        super().prepare_trainer(trainer)
        correction = ScaffoldCorrection(trainer.network)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, correction)
        setattr(trainer, _TRAINER_ATTRIBUTE, correction)

    def on_receive(self, network: nn.Module, trainer: SupervisedTrainer, meta: Mapping[str, Any]) -> None:
        super().on_receive(network, trainer, meta)
        _correction(trainer).set_global(meta.get(MetaKey.CONTROL_VARIATE))

    def before_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().before_training(network, trainer)
        _correction(trainer).start_round()

    def after_training(self, network: nn.Module, trainer: SupervisedTrainer) -> None:
        super().after_training(network, trainer)
        _correction(trainer).end_round(trainer.optimizer)

    def upload_meta(
        self, network: nn.Module, trainer: SupervisedTrainer, images: torch.Tensor, *, seed: int
    ) -> dict[str, Any]:
        return {MetaKey.CONTROL_DELTA: _correction(trainer).delta()}

    def site_state(self, trainer: SupervisedTrainer) -> dict[str, torch.Tensor]:
        return _correction(trainer).state()

    def load_site_state(self, trainer: SupervisedTrainer, state: Mapping[str, torch.Tensor]) -> None:
        _correction(trainer).load_state(state)

    def aggregator(self) -> ScaffoldAggregator:
        return ScaffoldAggregator(num_sites=self.num_sites)


def _correction(trainer: Any) -> ScaffoldCorrection:
    correction = getattr(trainer, _TRAINER_ATTRIBUTE, None)
    if correction is None:
        raise RuntimeError("Scaffold.prepare_trainer(trainer) must run before the round's hooks.")
    return correction
