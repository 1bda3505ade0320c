"""FedDG-ELCFS's server side: the amplitude bank, the check of what a site uploads, and what each site is sent.

Each site uploads the low-band amplitude spectra (M, C, *W) of a fixed sample of its training images
(``MetaKey.AMPLITUDE_SPECTRA``); the server keeps every site's latest upload and sends each site the
other sites' spectra (``MetaKey.AMPLITUDE_BANK``), at most ``max_bank`` rows. The weights are averaged
as FedAvg's (:class:`~omnifm_monai.strategies.aggregate.WeightedMean`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from omnifm_monai.flare.constants import MetaKey
from omnifm_monai.strategies.aggregate import WeightedMean

__all__ = ["AmplitudeBank", "validate_amplitudes"]


def validate_amplitudes(
    value: Any, *, max_rows: int, max_window: int, like: tuple[int, ...] | None = None
) -> np.ndarray:
    """Check an uploaded amplitude upload (M, C, *W) and return it as float32.

    Args:
        value: the upload.
        max_rows: most spectra M one upload may carry (a flood is refused).
        max_window: largest window side W accepted (W is odd: ``2b + 1``).
        like: the (C, *W) the other sites sent, if any: every site must send the same.

    Raises:
        ValueError: not a numeric array of rank >= 3, M outside [1, max_rows], an even or too large window,
            a shape unlike the other sites', NaN, Inf or a negative amplitude. The message names the value.
    """
    name = "amplitude spectra"
    try:
        array = np.asarray(value)
    except Exception as e:  # an object numpy cannot read
        raise ValueError(f"{name} are not an array: {e}") from e
    if array.dtype.kind not in "fiu" or array.ndim < 3:
        raise ValueError(f"{name} must be a numeric (M, C, *W) array, got dtype {array.dtype} shape {array.shape}.")
    if not 1 <= array.shape[0] <= max_rows:
        raise ValueError(f"{name} must hold 1 to {max_rows} rows, got {array.shape[0]}.")
    window = array.shape[2:]
    if any(w % 2 == 0 or w > max_window for w in window):
        raise ValueError(f"{name} window {window} must be odd sides of at most {max_window}.")
    if like is not None and tuple(array.shape[1:]) != tuple(like):
        raise ValueError(f"{name} have shape (C, *W) = {array.shape[1:]}; the other sites sent {tuple(like)}.")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or Inf.")
    if (array < 0).any():
        raise ValueError(f"{name} contain a negative amplitude.")
    return array


class AmplitudeBank(WeightedMean):
    """FedAvg's weighted mean plus the bank of each site's latest amplitude spectra.

    Args:
        max_rows: most spectra one upload may carry.
        max_window: largest window side accepted.
        max_bank: most spectra sent to one site per round (evenly spread over the other sites' rows).
    """

    def __init__(self, *, max_rows: int = 256, max_window: int = 33, max_bank: int = 256) -> None:
        super().__init__()
        if min(max_rows, max_window, max_bank) < 1:
            raise ValueError(f"max_rows, max_window and max_bank must be >= 1, got {(max_rows, max_window, max_bank)}.")
        self.max_rows, self.max_window, self.max_bank = max_rows, max_window, max_bank
        self.spectra: dict[str, np.ndarray] = {}  # site -> (M, C, *W), the latest accepted upload

    def validate_meta(self, site: str, meta: Mapping[str, Any], params: Mapping[str, np.ndarray]) -> dict[str, int]:
        if meta.get(MetaKey.AMPLITUDE_SPECTRA) is None:
            raise ValueError(f"feddg_elcfs needs {MetaKey.AMPLITUDE_SPECTRA} in meta; {site} sent none.")
        like = next((a.shape[1:] for s, a in sorted(self.spectra.items()) if s != site), None)
        array = validate_amplitudes(
            meta[MetaKey.AMPLITUDE_SPECTRA], max_rows=self.max_rows, max_window=self.max_window, like=like
        )
        return {"spectral": int(array.nbytes)}

    def add(self, site: str, params: Mapping[str, np.ndarray], weight: float, round_num: int, meta: Mapping) -> None:
        super().add(site, params, weight, round_num, meta)
        self.spectra[site] = np.asarray(meta[MetaKey.AMPLITUDE_SPECTRA], np.float32)

    def outgoing_meta(self, site: str) -> dict[str, Any]:
        others = [self.spectra[s] for s in sorted(self.spectra) if s != site]
        if not others:
            return {}  # the first round: no other site has uploaded yet
        bank = np.concatenate(others)  # (M', C, *W)
        if len(bank) > self.max_bank:
            bank = bank[np.linspace(0, len(bank) - 1, self.max_bank).round().astype(np.int64)]
        return {MetaKey.AMPLITUDE_BANK: np.ascontiguousarray(bank, np.float32)}
