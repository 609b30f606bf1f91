"""What each API route takes and answers, declared next to it with ``@documented``.

The OpenAPI document (api/openapi.py) is built from these declarations and from the very schema classes the
routes load their bodies and query strings with, never written by hand: a route whose schema changes
changes the document with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from marshmallow import Schema

JSON = "application/json"
SSE = "text/event-stream"

Loose = Literal["object", "array"]

LOOSE_OBJECT: Loose = "object"
"""An answer with no schema of its own: documented as any JSON object (only the OpenAPI document itself)."""
LOOSE_ARRAY: Loose = "array"
"""An answer that is a JSON array of objects with no schema of its own."""

Auth = Literal["api", "join", "none"]
"""Which bearer token a route asks for: the API token (when one is set), the join token, or none."""

ROUTE_DOC = "route_doc"
"""The attribute of a view function that holds its RouteDoc."""

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteDoc:
    """What one view takes and answers; its summary and description are its docstring."""

    body: type[Schema] | None = None
    query: type[Schema] | None = None
    answer: type[Schema] | Loose = LOOSE_OBJECT
    """The schema of the answer's JSON (schemas/answers/), which tests validate real answers against."""
    many: bool = False
    """The answer is a JSON array of ``answer`` objects (GET /api/businesses/{id}/components)."""
    status: int = 200
    extra_status: tuple[int, ...] = ()
    """Other success statuses (POST /api/businesses answers 200 to a dry run, 201 otherwise)."""
    errors: tuple[int, ...] = ()
    """Error statuses of this route beyond those every route of its kind has (see openapi.common_errors)."""
    media: tuple[str, ...] = (JSON,)
    """What the answer may be: JSON, Server-Sent Events, or either (chosen by the query)."""
    auth: Auth = "api"
    store: bool = True
    """Whether the route reads or writes Redis or the database (so may answer 503 when they are away)."""


def documented(
    *,
    body: type[Schema] | None = None,
    query: type[Schema] | None = None,
    answer: type[Schema] | Loose = LOOSE_OBJECT,
    many: bool = False,
    status: int = 200,
    extra_status: tuple[int, ...] = (),
    errors: tuple[int, ...] = (),
    media: tuple[str, ...] = (JSON,),
    auth: Auth = "api",
    store: bool = True,
) -> Callable[[F], F]:
    """Attach a RouteDoc to a view; the view itself is returned unchanged (Flask registers the same function)."""
    doc = RouteDoc(body, query, answer, many, status, extra_status, errors, media, auth, store)

    def attach(view: F) -> F:
        setattr(view, ROUTE_DOC, doc)
        return view

    return attach


def route_doc(view: Callable[..., Any]) -> RouteDoc | None:
    """The RouteDoc of ``view``, if it has one."""
    doc = getattr(view, ROUTE_DOC, None)
    return doc if isinstance(doc, RouteDoc) else None
