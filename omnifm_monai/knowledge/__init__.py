"""The server's global spectral knowledge base (GSKR): storage, retrieval, pruning, persistence."""

from .base import SpectralKnowledgeBase
from .duplicates import collapse_duplicates
from .persistence import CONFIG_KEYS, DATA_KEYS, Entries, config_from_state, entries_from_state, read_npz, write_npz
from .prototypes import first_contact_rows, site_prototype_rows
from .pruning import age_keep, frequency_keep, priority_order, rank_in_source, share_cap, share_keep, source_quotas
from .retrieval import pick_prototypes, topk_cosine
from .spread import token_cosines
from .validation import (
    EPS_NORM,
    MAX_LABEL,
    as_unit_rows,
    as_unit_tokens,
    check_int,
    check_labels,
    check_sources,
    is_int,
    row_norms,
)

__all__ = [
    "CONFIG_KEYS",
    "DATA_KEYS",
    "EPS_NORM",
    "Entries",
    "MAX_LABEL",
    "SpectralKnowledgeBase",
    "age_keep",
    "as_unit_rows",
    "as_unit_tokens",
    "check_int",
    "check_labels",
    "check_sources",
    "collapse_duplicates",
    "config_from_state",
    "entries_from_state",
    "first_contact_rows",
    "frequency_keep",
    "is_int",
    "pick_prototypes",
    "priority_order",
    "rank_in_source",
    "read_npz",
    "row_norms",
    "share_cap",
    "share_keep",
    "site_prototype_rows",
    "source_quotas",
    "token_cosines",
    "topk_cosine",
    "write_npz",
]
