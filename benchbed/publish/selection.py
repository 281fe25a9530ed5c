"""Picking records by grid values, shared by tables and findings."""

from __future__ import annotations

from typing import Any


def matches(record: dict[str, Any], where: dict[str, Any]) -> bool:
    """True when the record has every ``where`` value (a list means any of them)."""
    for key, wanted in where.items():
        have = record[key] if key in ("latent_dim", "seed") else record["grid"].get(key)
        if have not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True
