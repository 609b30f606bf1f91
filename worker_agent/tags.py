"""Node tags (document 003 §5.1.1) given with ``--tag`` or CORRAL_TAGS; node queries name them (``tags:ssd``)."""

from __future__ import annotations

from collections.abc import Iterable

from shared.node_tags import check_tags

TAGS_ENV = "CORRAL_TAGS"
"""Environment variable holding tags as ``appserver,ssd``."""


def parse_tags(flags: Iterable[str], env_value: str | None) -> list[str]:
    """Tags from CORRAL_TAGS, then from the ``--tag`` flags, each once; raises ValueError naming a bad one."""
    from_env = [item for item in (env_value or "").split(",") if item.strip()]
    return check_tags([*from_env, *flags])
