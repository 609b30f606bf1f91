"""Task commands: the optional ``HOST:/abs/path ...`` pin of the manual's template example."""

from __future__ import annotations

import re

PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9.-]*):(/\S.*)$", re.DOTALL)
"""``192.168.10.100:/opt/apps/clean.sh`` pins the task to the node with that ip or hostname."""


def split_pin(command: str) -> tuple[str | None, str]:
    """(host or None, command without the pin)."""
    text = command.strip()
    match = PIN_RE.match(text)
    if not match:
        return None, text
    return match.group(1), match.group(2)


def task_pin(config: dict[str, str]) -> tuple[str | None, str]:
    """(host or None, command) of a task's stored config; an explicit ``host`` counts as a pin."""
    pin, command = split_pin(config["command"])
    return pin or config.get("host") or None, command
