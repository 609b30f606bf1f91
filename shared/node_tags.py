"""Node tags (document 003 §5.1.1 ``tags``): the one rule of what a tag is, for the agent's flags and the API.

A tag is a bare word a node query names (``tags:appserver``), so it holds no space, quote, colon or other
character of the query syntax: letters, digits, ``_``, ``.`` and ``-``, at most MAX_TAG_LENGTH of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_TAGS = 64
"""Most tags one node may carry."""

MAX_TAG_LENGTH = 64
"""Longest tag, in characters."""

TAG = re.compile(r"^[A-Za-z0-9_.-]+$")
"""What a tag may be made of."""

TAG_RULE = f"must be 1 to {MAX_TAG_LENGTH} letters, digits, '_', '.' or '-'"
"""The rule, as error messages say it."""


def check_tag(text: str) -> str:
    """``text`` stripped when it is a valid tag; raises ValueError naming it otherwise."""
    tag = text.strip()
    if not tag or len(tag) > MAX_TAG_LENGTH or not TAG.match(tag):
        raise ValueError(f"tag {text!r} {TAG_RULE}")
    return tag


def check_tags(tags: Iterable[str]) -> list[str]:
    """Valid tags, each once, in the order first given; raises ValueError on a bad one or too many."""
    found: list[str] = []
    for text in tags:
        tag = check_tag(text)
        if tag not in found:
            found.append(tag)
    if len(found) > MAX_TAGS:
        raise ValueError(f"{len(found)} tags given, at most {MAX_TAGS}")
    return found
