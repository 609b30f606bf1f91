"""``--secret-env``: secret env values for `run`, `schedule create` and `app create/update`, sent as the API's
``secretEnv``/``secretEnvs`` (stored encrypted, answered as names only).

``--secret-env NAME`` reads the value from the CLI's own environment (``DB_PASSWORD=... corral run ...`` or an
exported variable), so the value is neither in the shell's history nor in the process list;
``--secret-env NAME=VALUE`` takes it as written (and leaves it in both).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

HELP = (
    "Secret environment variable (repeat): NAME takes the value of NAME in this shell's environment (kept out "
    "of the shell history), NAME=VALUE as written. Stored encrypted, never shown back."
)


def parse_secret_env(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    """``--secret-env`` options as a dict (click callback); a NAME not set in the environment is an error."""
    secret: dict[str, str] = {}
    for value in values:
        name, sep, given = value.partition("=")
        if not name:
            raise click.BadParameter(f"{value!r} is not NAME or NAME=VALUE")
        if not sep:
            if name not in os.environ:
                raise click.BadParameter(f"{name} is not set in the environment (or give {name}=VALUE)")
            given = os.environ[name]
        secret[name] = given
    return secret


def secret_env_option(command: F) -> F:
    """The ``--secret-env`` option, its values as ``secret_env`` (a dict)."""
    option = click.option(
        "--secret-env", "secret_env", multiple=True, callback=parse_secret_env, metavar="NAME[=VALUE]", help=HELP
    )
    return option(command)
