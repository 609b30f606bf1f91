"""The API's JSON encoder: orjson, with Flask's own provider behind it for what orjson does not take.

Encoding was a third of a node query answering thousands of nodes (each node's document is a kilobyte and
more); orjson writes the same JSON seven times faster. Answers keep the key order the code builds (the
manual's order) and non-ASCII as is, as the json module did here with sort_keys and ensure_ascii off.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
"""Integer keys become strings as with the json module; datetimes go through Flask's default (an HTTP date),
so an answer reads the same whichever encoder wrote it."""


class OrjsonProvider(DefaultJSONProvider):
    sort_keys = False  # keep the manual's key order (ip, status, resources...)
    ensure_ascii = False  # show names as written

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:  # a caller asking for the json module's options (indent, ...) gets the json module
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def _encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=OPTIONS)
        except orjson.JSONEncodeError:  # an integer past 64 bits, a nesting too deep: the json module copes
            return super().dumps(obj).encode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(self._encode(obj) + b"\n", mimetype=self.mimetype)
