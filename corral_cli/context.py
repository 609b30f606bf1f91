"""What every command shares: exit codes, the API client of the invocation, JSON printing."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from . import formatting
from .client import Client
from .config import resolve

F = TypeVar("F", bound=Callable[..., Any])

PAGE_SIZE = 20
"""How many items a list command asks for when not told (the API's own default)."""

EXIT_FAILED = 1
"""Something the user asked for did not succeed (a node failed, a deployment task failed)."""

EXIT_API = 2
"""Bad usage or an error answer from the API (click uses 2 for usage errors too)."""

EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports a SIGINT death."""


class CommandError(click.ClickException):
    """A refusal the CLI words itself (unknown or ambiguous name, ...): `Error: ...` on stderr, exit code 2."""

    exit_code = EXIT_API


def segment(value: str) -> str:
    """``value`` as one path segment of an API URL (names may hold spaces, slashes, non-ASCII)."""
    return urllib.parse.quote(value, safe="")


def client_of(ctx: click.Context) -> Client:
    """The API client for this invocation, built once from the root group's options."""
    obj = ctx.find_root().obj
    if "client" not in obj:
        obj["client"] = Client(resolve(obj["url"], obj["token"], obj["config"], obj.get("ca_bundle")))
    client: Client = obj["client"]
    return client


def alias_of(command: click.Command, name: str, full_name: str) -> click.Command:
    """A second name for ``command``: the same callback and options, help saying what it is short for."""
    return click.Command(
        name,
        callback=command.callback,
        params=command.params,
        help=f"Alias of `{full_name}`.\n\n{command.help}",
        short_help=f"Alias of `{full_name}`.",
        context_settings=command.context_settings,
    )


def page_options(
    noun: str, default: int = PAGE_SIZE, older: str | None = None, most: int | None = None
) -> Callable[[F], F]:
    """``--page`` and ``--page-size`` of a list command (``older``: the size option's first spelling, still taken)."""
    size = click.option(
        "--page-size",
        *([older] if older else []),
        "page_size",
        type=click.IntRange(1, most),
        default=default,
        show_default=True,
        help=f"How many {noun} a page holds.",
    )
    page = click.option(
        "--page", type=click.IntRange(min=1), default=1, show_default=True, help=f"Which page of --page-size {noun}."
    )

    def decorate(command: F) -> F:
        return page(size(command))

    return decorate


def echo_json(data: Any) -> None:
    """Pretty JSON on stdout, non-ASCII kept readable."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def echo_answer(answer: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """A command's answer: the API's JSON with --json, else the text ``render`` makes of it."""
    if as_json:
        echo_json(answer)
        return
    click.echo(render(answer))


def echo_page(
    answer: Mapping[str, Any],
    as_json: bool,
    key: str,
    table: Callable[[Sequence[Mapping[str, Any]]], str],
    footer: tuple[str, int, int],
    paged_later: bool = False,
) -> None:
    """One page of a list: the API's JSON with --json, else ``table`` of ``answer[key]`` and the page footer.

    ``footer`` is the noun, page and page size; ``paged_later``: a manager from before this list was paged
    answers without ``total``, and then no footer is printed.
    """
    if as_json:
        echo_json(answer)
        return
    click.echo(table(answer.get(key, [])))
    if "total" in answer or not paged_later:
        click.echo(formatting.page_footer(answer, *footer))
