"""A site entry script that injects faults into an otherwise normal OmniFM client (test use only).

- ``site-2``: its local training raises in the first round it trains (a crash mid-round);
- ``site-3``: in its second round it uploads NaN weights (a buggy client);
- ``site-1``: in its second round it uploads 5,000 spectral tokens (a token flood), and in its third
  round it stalls for :data:`STALL_SECONDS` (a site that stops answering: the server's round timeout
  must move on without it).
"""

import time

import numpy as np
import torch

from omnifm_monai.flare import client
from omnifm_monai.flare.constants import MetaKey

STALL_SECONDS = 45
_train, _payload = client.SiteTrainer.train, client.SiteTrainer.payload


def train(self):
    self.rounds_trained = getattr(self, "rounds_trained", 0) + 1
    if self.site == "site-2" and self.rounds_trained == 1:
        raise RuntimeError("injected fault: training crashed")
    if self.site == "site-1" and self.rounds_trained == 3:
        time.sleep(STALL_SECONDS)
    return _train(self)


def payload(self):
    params, meta = _payload(self)
    if self.site == "site-3" and self.rounds_trained == 2:
        params = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in params.items()}
    if self.site == "site-1" and self.rounds_trained == 2:
        meta[MetaKey.TOKENS] = np.repeat(meta[MetaKey.TOKENS], 5000 // len(meta[MetaKey.TOKENS]) + 1, axis=0)
    return params, meta


client.SiteTrainer.train, client.SiteTrainer.payload = train, payload

if __name__ == "__main__":
    client.main()
