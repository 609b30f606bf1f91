"""A processor as the database keeps it: its URL and secret sealed together by services.secret_store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from manager_api.services import secret_store
from manager_api.services.webhooks import shown


@dataclass(frozen=True)
class Processor:
    """Where a task's results go, and the secret their signature is made with."""

    url: str
    secret: str


def seal(processor: dict[str, Any] | None) -> str:
    """The column's text for a posted ``processor`` ({"url", "secret"}), "" for none."""
    if not processor:
        return ""
    return secret_store.encrypt_env({"url": processor["url"], "secret": processor["secret"]})


def unseal(stored: str | None) -> Processor | None:
    """The processor ``seal`` stored, None for none."""
    opened = secret_store.decrypt_env(stored)
    return Processor(opened["url"], opened["secret"]) if opened else None


def posted(stored: str | None) -> dict[str, str] | None:
    """The processor as a task body carries it (a schedule hands it to each task it fires)."""
    processor = unseal(stored)
    return {"url": processor.url, "secret": processor.secret} if processor else None


def shown_url(stored: str | None) -> str | None:
    """What answers show of a processor: its URL's scheme, host and port (a path may hold a token), or None."""
    processor = unseal(stored)
    return shown(processor.url) if processor else None
