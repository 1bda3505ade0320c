"""What every task's simulated federation shares: the site lookup, the summary table, the argument checks
and the phantom site loop (which pool entries a site holds, the seeded shuffle into train/val/test)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import numpy as np

from omnifm_monai.data.image_io import to_uint8
from omnifm_monai.data.site_archive import SPLITS, is_phantom, split_cuts

__all__ = [
    "PHANTOM_SCENARIOS",
    "SiteFederation",
    "markdown_table",
    "per_split",
    "phantom_site_samples",
    "check_scenario_and_clients",
    "held_by_site",
    "site_images_uint8",
    "equal_shares",
    "shuffled_split_indices",
]

SiteT = TypeVar("SiteT")

PHANTOM_SCENARIOS: tuple[str, ...] = ("cross_modality_hard", "iid")
"""The scenarios of the dense-task phantom federations: one modality (or pair) per site, or all of them."""


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned Markdown table: header line, separator line, one line per row (joined by newlines)."""
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), separator, *(line(r) for r in rows)])


def per_split(count: Callable[[str], int]) -> str:
    """``"train/val/test"`` counts, e.g. ``"6/2/2"``, from ``count(split)``."""
    return "/".join(str(count(s)) for s in SPLITS)


@dataclass(frozen=True)
class SiteFederation(Generic[SiteT]):
    """Base of the federation dataclasses: the scenario and seed it was built with, and (declared by each
    subclass, after its own fields) a ``clients`` tuple of site data sets, each with a ``name``.

    A subclass sets :attr:`summary_headers` and writes :meth:`summary_title` and :meth:`summary_row`;
    :meth:`summary` builds the Markdown table from them.

    Args:
        scenario: the partition scenario.
        seed: the seed it was built with.
    """

    scenario: str
    seed: int

    # clients: tuple[SiteT, ...] is a field of every subclass (after the subclass's own fields)
    summary_headers: ClassVar[tuple[str, ...]] = ()

    @property
    def num_clients(self) -> int:
        """Number of sites."""
        return len(self.clients)

    def client(self, name: str) -> SiteT:
        """The site called ``name`` (e.g. ``"site-3"``).

        Raises:
            KeyError: when no site has that name.
        """
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(f"no site named {name!r}; sites: {[c.name for c in self.clients]}.")

    def summary_title(self) -> str:
        """The line above the table."""
        raise NotImplementedError

    def summary_row(self, client: SiteT) -> Sequence[str]:
        """The table cells of one site, in the order of :attr:`summary_headers`."""
        raise NotImplementedError

    def summary(self) -> str:
        """The title, a blank line and a Markdown table with one row per site."""
        rows = [tuple(self.summary_row(c)) for c in self.clients]
        return f"{self.summary_title()}\n\n{markdown_table(self.summary_headers, rows)}"


def phantom_site_samples(
    task: str,
    scenario: str,
    scenarios: Sequence[str],
    num_clients: int,
    image_size: int,
    samples_per_client: int | None,
    default_samples: int,
    data_dir: str | os.PathLike | None,
    own_data: str,
    *,
    min_samples: int = 5,
) -> int:
    """Check the arguments of a task's phantom federation builder; returns the images per site
    (``default_samples`` when ``samples_per_client`` is ``None`` or 0: "all the data" of a phantom).

    Raises:
        ValueError: for an unknown scenario, fewer than 1 site, an image under 16 px, fewer than
            ``min_samples`` samples per site, or a ``data_dir`` (``own_data`` says what a real site passes as
            ``dataset_dir`` instead).
    """
    check_scenario_and_clients(scenario, scenarios, num_clients, task=task)
    if image_size < 16:
        raise ValueError(f"image_size={image_size} must be >= 16 (the phantom's minimum).")
    samples = default_samples if not samples_per_client else int(samples_per_client)  # None or 0: the default
    if samples < min_samples:
        raise ValueError(
            f"samples_per_client={samples} must be >= {min_samples} so that train, val and test are non-empty."
        )
    if not is_phantom(data_dir):
        raise ValueError(
            f"data_dir={os.fspath(data_dir)!r}: {task} federations are built from the phantom only; give each "
            f"site its own {own_data} as dataset_dir instead."
        )
    return samples


def check_scenario_and_clients(
    scenario: str, scenarios: Sequence[str], num_clients: int, *, task: str | None = None
) -> None:
    """Check a federation builder's ``scenario`` (one of ``scenarios``) and ``num_clients`` (>= 1).

    Raises:
        ValueError: naming the argument and its value (and ``task`` when given).
    """
    if scenario not in scenarios:
        where = f" for {task}" if task else ""
        raise ValueError(f"scenario={scenario!r} is not supported{where}; expected one of {tuple(scenarios)}.")
    if num_clients < 1:
        raise ValueError(f"num_clients={num_clients} must be >= 1.")


def held_by_site(site: int, scenario: str, pool: Sequence) -> tuple:
    """What site ``site`` (0-based) holds: every entry of ``pool`` (``iid``), else ``pool[site % len(pool)]``."""
    return tuple(pool) if scenario == "iid" else (pool[site % len(pool)],)


def sites_per_source(num_clients: int, num_sources: int) -> list[list[int]]:
    """The 0-based sites that hold each of the first ``min(num_clients, num_sources)`` sources, dealt
    round-robin (site ``i`` holds source ``i % n``): the real-data builders' one source per site."""
    used = min(num_clients, num_sources)
    return [list(range(s, num_clients, used)) for s in range(used)]


def equal_shares(total: int, parts: int) -> list[int]:
    """``total`` items in ``parts`` shares that differ by at most one, larger first."""
    return [len(c) for c in np.array_split(np.arange(total), parts)]


def site_images_uint8(parts: Sequence[np.ndarray]) -> np.ndarray:
    """A site's float ``(n_k, C_k, S, S)`` parts -> uint8 ``(N, S, S)`` or ``(N, S, S, 3)``; gray parts become
    RGB when the site also holds RGB ones."""
    if len({x.shape[1] for x in parts}) > 1:
        parts = [np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x for x in parts]  # mixed -> RGB
    return to_uint8(np.concatenate(parts))


def shuffled_split_indices(seed: int, site: int, samples: int) -> dict[str, np.ndarray]:
    """A site's seeded train/val/test indices (60/20/20 of a permutation, each sorted): split -> (n,) int."""
    order = np.random.default_rng([seed, site, 0x5A]).permutation(samples)
    return {s: np.sort(idx) for s, idx in zip(SPLITS, np.split(order, split_cuts(samples)))}
