"""``corral``: one click group with the connection options; the commands live in one module per resource."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from shared.tls import CA_BUNDLE_ENV

from . import formatting
from .apps import app
from .businesses import business
from .client import ApiError
from .config import CONFIG_ENV, TOKEN_ENV, URL_ENV, ConfigError
from .context import EXIT_API, client_of, echo_page, page_options
from .dashboard import dashboard
from .deployments import deploy, deployment, status, stop
from .nodes import node, nodes
from .schedules import schedule
from .scripts import script
from .tasks import run, tasks
from .templates import template
from .tokens import token
from .workflows import workflow

logger = logging.getLogger(__name__)

AUDIT_LIMIT_MAX = 1000
"""The most entries `GET /api/audit` answers at once."""


class CorralGroup(click.Group):
    """A click group that turns API errors into their message on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ApiError, ConfigError) as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_API)


@click.group(cls=CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--manager-url",
    "url",
    envvar=URL_ENV,
    metavar="URL",
    help=f"Manager to talk to [env {URL_ENV}; config `url`; default http://127.0.0.1:8080].",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    show_envvar=False,
    help=f"API token [env {TOKEN_ENV}; config `token`].",
)
@click.option(
    "--config",
    "config",
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Config file [env {CONFIG_ENV}; default ~/.config/corral/config.toml].",
)
@click.option(
    "--ca-bundle",
    "ca_bundle",
    envvar=CA_BUNDLE_ENV,
    metavar="FILE",
    help=f"PEM CA bundle verifying an https:// manager [env {CA_BUNDLE_ENV}; config `ca-bundle`; default system CAs].",
)
@click.option("-v", "--verbose", is_flag=True, help="Log each API call on stderr.")
@click.version_option(package_name="corral", prog_name="corral")
@click.pass_context
def cli(  # noqa: PLR0913 - one parameter per root option
    ctx: click.Context, url: str | None, token: str | None, config: Path | None, ca_bundle: str | None, verbose: bool
) -> None:
    """Talk to a corral manager: nodes, templates, deployments, fleet tasks, schedules, businesses, apps, the audit
    log."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    ctx.obj = {"url": url, "token": token, "config": config, "ca_bundle": ca_bundle}


@cli.command()
@page_options("entries", default=50, older="--limit", most=AUDIT_LIMIT_MAX)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@click.pass_context
def audit(ctx: click.Context, page_size: int, page: int, as_json: bool) -> None:
    """Show the audit log, newest first: who deployed, stopped, labelled, joined, and what went offline."""
    # `limit`: a manager from before audit paging takes only that name
    query: dict[str, Any] = {"limit": page_size}
    if page > 1:  # only then: a manager from before audit paging refuses an unknown `page`
        query["page"] = page
    answer = client_of(ctx).get("/api/audit", query)
    echo_page(answer, as_json, "entries", formatting.audit_table, ("entries", page, page_size), paged_later=True)


for command in (
    nodes,
    node,
    template,
    deploy,
    status,
    deployment,
    stop,
    run,
    tasks,
    schedule,
    script,
    workflow,
    business,
    app,
    dashboard,
    token,
):
    cli.add_command(command)


def main() -> None:
    """Entry point for ``python -m corral_cli.main``."""
    cli(prog_name="corral")


if __name__ == "__main__":
    main()
