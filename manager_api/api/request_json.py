"""Reading request bodies: the one reader every route uses, JSON whatever the content type says (curl without -H
must work), held to a size, a nesting depth and well-formed text before any schema sees it.

What a hostile body gets, never a 500:

- over the route's limit (manager_api.body_limits: --max-body-bytes, the join 64 KiB): 413, on every route (those
  that take no body too, instead of acting), whether it comes with a Content-Length or chunked;
- nested deeper than MAX_DEPTH: 400, from a scan of the text before it is decoded, so a 100,000-deep body is
  never built and no recursion (the decoder's, a schema's, the error handler's) ever meets it;
- not UTF-8 (nor the UTF-16/32 that JSON allows), or holding NaN or Infinity (not JSON), or a number beyond a
  double's range (``1e999``, which Python would read as infinity): 400;
- a lone surrogate (``"\\ud800"``) in any string or key: 400. Python decodes one, but it cannot be encoded again,
  so it would fail the answer, log line or database write that shows it.

Every 400 reads ``Invalid request format: <what is wrong>``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, NoReturn

from flask import Flask, current_app, g, request
from marshmallow import Schema
from werkzeug.exceptions import RequestEntityTooLarge

from manager_api.api.errors import INVALID_REQUEST, ApiError
from manager_api.body_limits import body_limit
from shared.defaults import MAX_BODY_BYTES

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a body may have; the API's own bodies go 5 deep."""

NOT_AN_OBJECT = f"{INVALID_REQUEST}: body must be a JSON object"

# A JSON string (escapes included, so a quoted bracket never counts) or a bracket. Strings are matched whole,
# in C, so the scan's Python loop turns once per string and bracket, not once per character.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|(?P<open>[\[{])|(?P<close>[\]}])', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""How a surrogate is written in JSON text (the text itself holds none: it was decoded strictly)."""
_BODY = "corral_body"
"""Where the body read for this request is kept (flask.g), so that it is read once."""


def init_app(app: Flask, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Cap request bodies on ``app``, on every route: a body route reads at most the limit, any other answers 413
    to a body over it instead of acting."""
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.before_request(_refuse_oversized)


def _limit() -> int:
    """The current request's body limit (Flask's per-request max_content_length, set by _refuse_oversized)."""
    return request.max_content_length or MAX_BODY_BYTES


def _refuse_oversized() -> None:
    # A route that takes no body never reads it, so without this it would act on a request carrying 1 GiB.
    request.max_content_length = body_limit(request.path, current_app.config["MAX_CONTENT_LENGTH"])
    length = request.content_length
    if length is not None and length > _limit():
        raise RequestEntityTooLarge()
    if length is None:
        body()  # chunked: reading it (up to the limit, plus one byte) is the only way to know its size


def body() -> bytes:
    """The request body as sent; 413 when it is over the route's limit, whatever the framing."""
    cached: bytes | None = g.get(_BODY)
    if cached is not None:
        return cached
    environ = request.environ
    length = request.content_length
    limit = _limit()
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    if length is None and not environ.get("wsgi.input_terminated"):
        # Without a length, only a server that ends the stream itself (gunicorn does) may be read to its end.
        data = b""
    else:
        # Read past the limit by one byte, rather than through werkzeug's max_content_length stream: that one
        # stops at the limit and returns what it has, so an oversized chunked body would be read cut short.
        data = environ["wsgi.input"].read(limit + 1 if length is None else length)
        if len(data) > limit:
            raise RequestEntityTooLarge()
    setattr(g, _BODY, data)
    return data


def _bad(reason: str) -> NoReturn:
    raise ApiError(400, f"{INVALID_REQUEST}: {reason}")


def _text(data: bytes) -> str:
    encoding = json.detect_encoding(data)
    try:
        # Strict, where json.loads(bytes) would pass encoded surrogates through.
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        _bad(f"body is not valid {encoding.upper()} text ({exc.reason} at byte {exc.start})")


def _check_depth(text: str) -> None:
    # Before decoding, without recursion: the decoder recurses once per level and would build everything
    # before any check on the result could run. Invalid JSON may be counted wrong here; it fails decoding next.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # the common case, counted in C: not enough brackets to nest too deep, wherever they are
    depth = 0
    for token in _TOKENS.finditer(text):
        if token.lastgroup == "open":
            depth += 1
            if depth > MAX_DEPTH:
                _bad(f"body nests deeper than {MAX_DEPTH} levels")
        elif token.lastgroup == "close":
            depth -= 1


def _refuse_constant(name: str) -> NoReturn:
    _bad(f"body holds {name}, which is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # valid JSON text, but no double holds it: it would come in as infinity
        _bad(f"body holds the number {_shown(text)}, beyond a double's range")
    return value


def _code(char: str) -> str:
    return f"\\u{ord(char):04x}"


def _shown(text: str) -> str:
    """``text`` cut to 64 characters, its surrogates written as escapes (they can be shown no other way)."""
    cut = text[:64] + ("..." if len(text) > 64 else "")
    return _SURROGATE.sub(lambda found: _code(found[0]), cut)


def _items(container: dict[str, Any] | list[Any]) -> Iterator[tuple[str | int, Any]]:
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


def _where(path: list[str | int]) -> str:
    """``task_groups[0].tasks[1].name``, as the businesses API names fields; ``body`` for the body itself."""
    parts: list[str] = []
    for step in path:
        parts.append(f"[{step}]" if isinstance(step, int) else f"{'.' if parts else ''}{_shown(step)}")
    return "".join(parts) or "body"


def _check_strings(value: Any) -> None:
    # One walk over every key and string, with a stack of iterators (as deep as the body, so at most MAX_DEPTH).
    if not isinstance(value, dict | list):
        return
    path: list[str | int] = []
    stack = [_items(value)]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            if path:
                path.pop()
            continue
        key, item = step
        if isinstance(key, str) and (found := _SURROGATE.search(key)):
            _bad(f"body holds a lone surrogate ({_code(found[0])}) in the key '{_shown(key)}' of {_where(path)}")
        if isinstance(item, str) and (found := _SURROGATE.search(item)):
            _bad(f"body holds a lone surrogate ({_code(found[0])}) in {_where([*path, key])}")
        if isinstance(item, dict | list):
            path.append(key)
            stack.append(_items(item))


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ApiError saying what is wrong with it (413 when too large)."""
    return object_of(_text(body()))


def object_of(text: str) -> dict[str, Any]:
    """``text`` (a request body, or JSON typed into a console form) as a JSON object, held to the same depth and
    well-formedness as a body; a 400 ApiError saying what is wrong otherwise."""
    _check_depth(text)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_float)
    except ValueError:
        raise ApiError(400, NOT_AN_OBJECT) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value)  # only then can a string or key hold a lone one
    if not isinstance(value, dict):
        raise ApiError(400, NOT_AN_OBJECT)
    return value


def load(schema: Schema) -> dict[str, Any]:
    """The request body validated by ``schema`` (raises marshmallow.ValidationError → 400)."""
    result: dict[str, Any] = schema.load(json_object())
    return result
