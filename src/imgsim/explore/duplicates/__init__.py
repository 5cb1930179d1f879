"""Exact and near-duplicate images: fingerprints, pairs without all-pairs comparison, groups."""

from .finder import Collection, DuplicateReport, StoreFinder, find_groups, find_in_folder
from .fingerprint import Fingerprint, fingerprint_bytes
from .groups import Group, Member

__all__ = [
    "Collection",
    "DuplicateReport",
    "Fingerprint",
    "Group",
    "Member",
    "StoreFinder",
    "find_groups",
    "find_in_folder",
    "fingerprint_bytes",
]
