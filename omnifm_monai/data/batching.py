"""The training batch size of a site: every bundle drops the last incomplete batch, so it must fit the site.

Every bundle's training ``DataLoader`` sets ``drop_last=True``: a last batch of one image (17 images, batch 8)
would make BatchNorm raise ("Expected more than 1 value per channel when training"). A site with fewer
images than ``batch_size`` trains on one batch of all its images instead (drop_last would leave nothing); a
site with a single training image cannot train a network with BatchNorm and is refused with one line.
"""

from __future__ import annotations

__all__ = ["MIN_TRAINING_ITEMS", "training_batch_size"]

MIN_TRAINING_ITEMS = 2
"""The fewest training items a site can train on (BatchNorm needs two values per channel)."""


def training_batch_size(batch_size: int, num_items: int) -> int:
    """``min(batch_size, num_items)``: the batch size of a training loader with ``drop_last=True``.

    Args:
        batch_size: the configured batch size.
        num_items: the training set's size.

    Raises:
        ValueError: when ``batch_size < 1`` or the set has fewer than :data:`MIN_TRAINING_ITEMS` items.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1.")
    if num_items < MIN_TRAINING_ITEMS:
        raise ValueError(
            f"the training set has {num_items} item(s); at least {MIN_TRAINING_ITEMS} are needed to train "
            "(BatchNorm needs two values per channel). Add training data to this site."
        )
    return min(batch_size, num_items)
