"""The end-of-run summary of one federated job: which sites took part to the end, and why the others did not.

The NVFlare simulator can exit 0 while a site crashed, so the verdict comes from the job's results, which
are the same in the simulator, POC and production: the server's ``final_metrics.json`` (the sites that
evaluated the final model, and ``site_errors``: the sites that could not start, with their one-line error)
and ``server_state.json`` (each round's rejections and missing results). A site's own log, when it is on
this machine (simulator, POC), is named for the details.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["RunSummary", "summarize_run"]


@dataclass
class RunSummary:
    """Per-site outcome of a job.

    Args:
        ok: every site evaluated the final model.
        sites: site -> ``"ok ..."`` or why it did not finish.
        failed: the sites that did not finish.
    """

    ok: bool
    sites: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The summary as printed at the end of a run."""
        head = "every site finished" if self.ok else f"{len(self.failed)} of {len(self.sites)} site(s) FAILED"
        return "\n".join([f"OmniFM job summary: {head}", *(f"  {site}: {line}" for site, line in self.sites.items())])


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _last_problem(history: list[dict], site: str) -> str:
    """The last round's reason for ``site``: its rejection, or that no result came back."""
    for record in reversed(history):
        if site in record.get("rejected", {}):
            return f"round {record['round']} rejected: {record['rejected'][site]}"
        if site in record.get("no_result", []):
            return f"round {record['round']}: no result (crashed, disconnected or timed out)"
    return "no round result recorded"


def summarize_run(
    state_dir: str, sites: Sequence[str], headline: str = "", workspace: str = "", site_logs: dict | None = None
) -> RunSummary:
    """What happened to each site of a finished (or ended) job.

    Args:
        state_dir: the controller's state folder (``final_metrics.json``, ``server_state.json``):
            ``JobSettings.server_state_dir()``, ``PocResult.state_dir``.
        sites: the job's sites.
        headline: the metric shown for a site that finished (empty: none).
        workspace: the simulator workspace (``<workspace>/<site>/log.txt`` is named for a failed site).
        site_logs: ``{site: log path}`` where the logs lie elsewhere (POC).
    """
    final = _read_json(os.path.join(state_dir, "final_metrics.json"))
    history = _read_json(os.path.join(state_dir, "server_state.json")).get("history", [])
    metrics, errors = final.get("metrics", {}), final.get("site_errors", {})
    summary = RunSummary(ok=True)
    for site in sites:
        if site in errors:
            line = errors[site].removeprefix(f"{site} ")  # "failed at start: ..."
        elif site in metrics and metrics[site]:
            value = float(metrics[site].get(headline, float("nan")))
            summary.sites[site] = f"ok, final {headline} {value:.4f}" if math.isfinite(value) else "ok"
            continue
        elif not final:
            line = f"no final evaluation: the job did not finish ({_last_problem(history, site)})"
        else:
            line = f"no final evaluation ({_last_problem(history, site)})"
        log = (site_logs or {}).get(site) or (os.path.join(workspace, site, "log.txt") if workspace else "")
        if log and os.path.isfile(log):
            line += f"; log: {log}"
        summary.sites[site], summary.ok = line, False
        summary.failed.append(site)
    return summary
