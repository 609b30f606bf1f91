"""Node labels (``key=value``) given with ``--label`` or CORRAL_LABELS; fleet task targets can name them."""

from __future__ import annotations

import re
from collections.abc import Iterable

LABELS_ENV = "CORRAL_LABELS"
"""Environment variable holding labels as ``k=v,k2=v2``."""

_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_label(text: str) -> tuple[str, str]:
    """One ``key=value`` as (key, value); raises ValueError naming what is wrong."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
        raise ValueError(f"label {text!r} is not key=value")
    if not _KEY.match(key):
        raise ValueError(f"label key {key!r} must be non-empty and made of letters, digits, '_', '.', '-'")
    if not value:
        raise ValueError(f"label {key!r} has an empty value")
    return key, value


def parse_labels(flags: Iterable[str], env_value: str | None) -> dict[str, str]:
    """Labels from CORRAL_LABELS, then from the ``--label`` flags (a flag wins over the environment)."""
    labels: dict[str, str] = {}
    for item in (env_value or "").split(","):
        if item.strip():
            key, value = parse_label(item)
            labels[key] = value
    for item in flags:
        key, value = parse_label(item)
        labels[key] = value
    return labels
