"""The public JSON of registered scripts."""

from __future__ import annotations

import base64
import json
from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import Script
from manager_api.services.paging import Page


def script_json(row: Script, content: bool = False) -> dict[str, Any]:
    """A script version; with ``content`` its body as text, or its zip in base64."""
    out: dict[str, Any] = {
        "name": row.name,
        "version": row.version,
        "interpreter": row.interpreter,
        "kind": row.kind,
        "entry": row.entry,
        "params": json.loads(row.params),
        "digest": row.digest,
        "size": row.size,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
    }
    if content:
        raw = bytes(row.content)
        if row.kind == "body":
            out.update(content=raw.decode(), content_encoding="text")
        else:
            out.update(content=base64.b64encode(raw).decode(), content_encoding="base64")
    return out


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    return page_json("scripts", [script_json(row) for row in page.rows], page.total, page_number, page_size)
