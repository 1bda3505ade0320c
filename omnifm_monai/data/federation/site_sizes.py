"""Unequal site sizes: one ``samples_per_client`` value per site (a few large hospitals, several small ones)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["parse_site_sizes", "sizes_per_site"]


def parse_site_sizes(text: str) -> tuple[int, ...]:
    """``"400,400,60"`` -> ``(400, 400, 60)``; ``""`` -> ``()`` (every site the same size).

    Raises:
        ValueError: for an entry that is not a positive integer, naming the text.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"site_sizes={text!r}: expected comma-separated positive integers, e.g. '400,400,60'."
        ) from None
    if any(s < 1 for s in sizes):
        raise ValueError(f"site_sizes={text!r}: every size must be >= 1.")
    return sizes


def sizes_per_site(site_sizes: Sequence[int] | str | None, num_clients: int, default: int | None) -> list[int | None]:
    """One size per site: ``site_sizes`` (a sequence or the text :func:`parse_site_sizes` reads), else ``default``.

    Raises:
        ValueError: when ``site_sizes`` does not give exactly one size >= 1 per site.
    """
    if isinstance(site_sizes, str):
        site_sizes = parse_site_sizes(site_sizes)
    if not site_sizes:
        return [default] * num_clients
    sizes = [int(s) for s in site_sizes]
    if len(sizes) != num_clients or any(s < 1 for s in sizes):
        raise ValueError(
            f"site_sizes={list(site_sizes)}: expected {num_clients} sizes >= 1, one per site "
            f"(num_clients={num_clients})."
        )
    return sizes
