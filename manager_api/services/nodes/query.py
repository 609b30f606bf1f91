"""Node queries (document 003 §5.1.2): Lucene query syntax, parsed by luqum, matched against a node's document.

A bare word matches any value of the document (``appserver``, ``hostname*``, ``192.168.1.*``); ``field:value``
follows a dotted path through objects and lists (``networks.address:10.0.0.5``, ``labels.zone:us-east``);
ranges ``[a TO b]`` and ``{a TO b}`` and ``>8 >=8 <8 <=8`` compare addresses as addresses and numbers as
numbers; ``AND``, ``OR``, ``NOT``, ``-``, ``+``, parentheses and quoted phrases combine them. Two terms side
by side mean OR, as in Lucene and Elasticsearch. Text compares without regard to case. As in Lucene, a ``/``
starts a regular expression (refused here), so a path is quoted or escaped: ``disks.dirName:"/"``,
``disks.dirName:\\/data*``; a backslash makes any character literal (``\\*`` is a star, not a wildcard).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from luqum import tree
from luqum.exceptions import ParseError
from luqum.parser import parser

from manager_api.services.errors import INVALID_REQUEST, Invalid

MAX_QUERY_LENGTH = 2000
"""Longest query accepted, in characters."""

PATH_HINT = ' (a "/" starts a regex: quote a path, disks.dirName:"/var", or escape it, disks.dirName:\\/var)'
"""Said when a query breaks on a slash: most likely a path written as is."""

_PARSING = threading.Lock()  # luqum's parser (PLY) keeps its state in one module-level object

Values = list[Any] | None
"""The values a term is matched against; None: every value of the document (a term without a field)."""


class NodeQuery:
    """A parsed query: ``matches(document)`` says whether a node's document answers it."""

    def __init__(self, text: str, root: tree.Item) -> None:
        self.text = text
        self._root = root

    def matches(self, document: Mapping[str, Any]) -> bool:
        """Whether ``document`` (a node's JSON-like document) matches the query."""
        return _holds(self._root, document, None)

    def fields(self) -> frozenset[str] | None:
        """The top-level fields the query reads (``os`` for ``os.cpus:>2``); None when a bare term reads them all."""
        named: set[str] = set()
        bare = False

        def walk(item: tree.Item, in_field: bool) -> None:
            nonlocal bare
            if isinstance(item, tree.SearchField):
                named.add(item.name.split(".")[0])
                in_field = True
            elif not in_field and isinstance(item, (tree.Word, tree.Phrase, tree.Range, tree.From, tree.To)):
                bare = True
            for child in item.children:
                walk(child, in_field)

        if isinstance(self._root, tree.Word) and self._root.value == "*":
            return frozenset()  # every node, whatever its fields
        walk(self._root, False)
        return None if bare else frozenset(named)


def parse(text: str, parameter: str = "q") -> NodeQuery:
    """``text`` parsed, or Invalid naming ``parameter`` and where the query broke."""
    text = text.strip()
    if not text:
        raise Invalid(f"{INVALID_REQUEST}: {parameter}: the query is empty")
    if len(text) > MAX_QUERY_LENGTH:
        raise Invalid(f"{INVALID_REQUEST}: {parameter}: longer than {MAX_QUERY_LENGTH} characters")
    try:
        with _PARSING:
            root = parser.parse(text)
    except ParseError as exc:
        hint = PATH_HINT if "Illegal character '/" in str(exc) else ""
        raise Invalid(f"{INVALID_REQUEST}: {parameter}: {exc}{hint}") from None
    for item in _walk(root):
        if isinstance(item, (tree.Fuzzy, tree.Proximity, tree.Boost, tree.Regex)):
            hint = PATH_HINT if isinstance(item, tree.Regex) else ""
            raise Invalid(
                f"{INVALID_REQUEST}: {parameter}: {item} is not supported (no fuzzy, proximity, boost or regex){hint}"
            )
    return NodeQuery(text, root)


def _walk(item: tree.Item) -> Iterator[tree.Item]:
    yield item
    for child in item.children:
        yield from _walk(child)


def _holds(item: tree.Item, document: Mapping[str, Any], values: Values) -> bool:
    """Whether ``item`` holds for ``document``, its terms matched against ``values``."""
    if isinstance(item, tree.SearchField):
        return _holds(item.expr, document, list(_resolve(document, item.name.split("."))))
    if isinstance(item, (tree.Group, tree.FieldGroup, tree.Plus)):
        return _holds(item.a if isinstance(item, tree.Plus) else item.expr, document, values)
    if isinstance(item, (tree.Not, tree.Prohibit)):
        return not _holds(item.a, document, values)
    if isinstance(item, tree.AndOperation):
        return all(_holds(child, document, values) for child in item.children)
    if isinstance(item, (tree.OrOperation, tree.UnknownOperation)):
        return any(_holds(child, document, values) for child in item.children)
    candidates = list(_leaves(document)) if values is None else values
    if isinstance(item, tree.Phrase):
        return any(_equal(value, _unescaped(item.value[1:-1]), wildcards=False) for value in candidates)
    if isinstance(item, tree.Word):
        if item.value == "*":
            return values is None or bool(values)  # alone: every node; field:*: the field has a value
        pattern, wildcards = _word_pattern(item.value)
        return any(_equal(value, pattern, wildcards) for value in candidates)
    if isinstance(item, tree.Range):
        return any(_in_range(value, item) for value in candidates)
    if isinstance(item, (tree.From, tree.To)):
        return any(_beyond(value, item) for value in candidates)
    raise Invalid(f"{INVALID_REQUEST}: q: {item} is not supported")


def _unescaped(text: str) -> str:
    """``text`` with Lucene's backslash escapes resolved (``\\/`` is ``/``)."""
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _word_pattern(word: str) -> tuple[str, bool]:
    """What a Word matches: an fnmatch pattern and True when it has a wildcard not escaped (an escaped character
    stands for itself), else its text unescaped and False."""
    parts = re.split(r"(\\.)", word, flags=re.DOTALL)  # odd items: an escape and its character
    if not any("*" in part or "?" in part for part in parts[::2]):
        return _unescaped(word), False
    escaped = (f"[{part[1]}]" if part[1] in "*?[" else part[1] for part in parts[1::2])
    return "".join(part + next(escaped, "") for part in parts[::2]), True


def _resolve(value: Any, path: list[str]) -> Iterator[Any]:
    """The values at a dotted path; a list on the way means each of its elements."""
    if isinstance(value, list):
        for element in value:
            yield from _resolve(element, path)
        return
    if not path:
        yield value
        return
    if isinstance(value, Mapping) and path[0] in value:
        yield from _resolve(value[path[0]], path[1:])


def _leaves(value: Any) -> Iterator[Any]:
    """Every scalar value of a document (what a term without a field is matched against)."""
    if isinstance(value, Mapping):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child)
    elif value is not None:
        yield value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _equal(value: Any, pattern: str, wildcards: bool) -> bool:
    if wildcards and ("*" in pattern or "?" in pattern):
        return fnmatch.fnmatchcase(_text(value), pattern.lower())
    number = _number(pattern)
    if number is not None and not isinstance(value, str) and _number(value) is not None:
        return _number(value) == number
    return _text(value) == pattern.lower()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        return None


def _compare(value: Any, bound: str) -> int | None:
    """-1, 0 or 1 as ``value`` is below, at or above ``bound``: as addresses, else numbers; None if neither."""
    low, high = _address(value), _address(bound)
    if low is not None and high is not None:
        if low.version != high.version:
            return None
        a_int, b_int = int(low), int(high)
        return (a_int > b_int) - (a_int < b_int)
    a, b = _number(value), _number(bound)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    return None


def _in_range(value: Any, item: tree.Range) -> bool:
    low, high = item.low.value, item.high.value
    if low != "*":
        order = _compare(value, low)
        if order is None or order < 0 or (order == 0 and not item.include_low):
            return False
    if high != "*":
        order = _compare(value, high)
        if order is None or order > 0 or (order == 0 and not item.include_high):
            return False
    return True


def _beyond(value: Any, item: tree.From | tree.To) -> bool:
    order = _compare(value, item.a.value)
    if order is None:
        return False
    if isinstance(item, tree.From):
        return order > 0 or (order == 0 and item.include)
    return order < 0 or (order == 0 and item.include)
