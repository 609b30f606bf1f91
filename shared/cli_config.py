"""The ``--config config.yaml`` file of the ``manager`` and ``agent`` commands (manual §3.2).

Every key is a long flag without its dashes (``api-token``; ``api_token`` is read the same), every value
has the flag's type. The file's values become the parser's defaults (``parser.set_defaults``), so what
the command line says wins, and a CORRAL_* variable that a flag falls back on applies only when neither
the command line nor the file set that flag: flag > file > environment > built-in default, as in Nomad,
where flags override the configuration file.

PyYAML is imported only when a file is read or printed: an idle agent started without ``--config`` pays
nothing for it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

CONFIG_FLAG = "--config"
PRINT_FLAG = "--print-config"
HIDDEN = "***"
"""What --print-config shows in place of a secret (a token, a password inside a URL)."""

_NOT_KEYS = frozenset({"help", "config", "print-config"})
"""Flags that make no sense in the file itself."""


class ConfigFileError(Exception):
    """A config file that cannot be used; the command exits 2 with this message, as for a bad flag."""


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """--config FILE and --print-config, on a command's parser."""
    parser.add_argument(
        CONFIG_FLAG,
        metavar="FILE",
        help="YAML file whose keys are these long flags (port: 8080); flags on the command line win over it",
    )
    parser.add_argument(
        PRINT_FLAG,
        action="store_true",
        help="print the effective configuration as YAML, secrets hidden, and exit",
    )


def _flag_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Long flag name without dashes -> its action, for every flag a file may set."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--") and option[2:] not in _NOT_KEYS:
                found[option[2:]] = action
    return found


def _type_name(action: argparse.Action) -> str:
    if isinstance(action, argparse._AppendAction):
        return "a list of strings"
    if action.type is int:
        return "an integer"
    if action.type is float:
        return "a number"
    if action.nargs == 0:
        return "true or false"
    return "a string"


def _value(action: argparse.Action, value: Any) -> Any:
    """``value`` as the flag's parsed value would be; raises ValueError when it has another type."""
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError
        return list(value)
    if action.nargs == 0:  # store_true and the like
        if not isinstance(value, bool):
            raise ValueError
        return value
    if isinstance(value, bool):  # YAML's yes/true is no number and no string here
        raise ValueError
    if action.type is int:
        if not isinstance(value, int):
            raise ValueError
    elif action.type is float:
        if not isinstance(value, int | float):
            raise ValueError
        value = float(value)
    else:
        if not isinstance(value, str):
            raise ValueError
        if callable(action.type):  # Path and the like: what argparse would call on the flag's text
            value = action.type(value)
    if action.choices is not None and value not in action.choices:
        raise ValueError
    return value


def read_config_file(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """The file's settings as parser defaults (dest -> value); raises ConfigFileError naming the file and key."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc}") from None
    try:
        # safe_load: a config file builds plain data only, never Python objects (yaml.load would).
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"config file {path} is not valid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigFileError(f"config file {path} must be a mapping of flag names to values (port: 8080)")
    actions = _flag_actions(parser)
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for raw_key, raw_value in document.items():
        key = str(raw_key).replace("_", "-")
        action = actions.get(key)
        if action is None:
            raise ConfigFileError(
                f"config file {path}: unknown key {raw_key!r} ({parser.prog} has no --{key}; "
                f"known keys: {', '.join(sorted(actions))})"
            )
        if key in seen:
            raise ConfigFileError(f"config file {path}: {seen[key]!r} and {raw_key!r} are the same key")
        seen[key] = str(raw_key)
        if raw_value is None:  # `key:` or `key: null` leaves the flag at its default
            continue
        try:
            values[action.dest] = _value(action, raw_value)
        except (ValueError, TypeError):
            choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
            raise ConfigFileError(
                f"config file {path}: key {raw_key!r} must be {_type_name(action)}{choices}, got {raw_value!r}"
            ) from None
    return values


def _given_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The dests the command line itself sets (defaults suppressed for one parse)."""
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _default in saved:
            action.default = argparse.SUPPRESS
        namespace, _rest = parser.parse_known_args(argv)
    finally:
        for action, default in saved:
            action.default = default
    return set(vars(namespace))


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, alternatives: Iterable[Collection[str]] = ()
) -> argparse.Namespace:
    """Parse ``argv`` over the --config file's values; a bad file exits 2 through ``parser.error``.

    ``alternatives`` are groups of dests that say the same thing in different ways (a token, a token file):
    one of them on the command line sets aside the file's value of every other, so the flag still wins.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(CONFIG_FLAG)
    known, _rest = pre.parse_known_args(argv)
    if known.config is not None:
        try:
            values = read_config_file(parser, known.config)
        except ConfigFileError as exc:
            parser.error(str(exc))
        given = _given_flags(parser, argv)
        for group in alternatives:
            if given & set(group):
                for dest in group:
                    values.pop(dest, None)
        parser.set_defaults(**values)
    return parser.parse_args(argv)


def hide_url_password(url: str) -> str:
    """``url`` with its password, if any, shown as HIDDEN."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN}@{host}{port}"))


def effective_config(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    secrets: Collection[str] = (),
    secret_urls: Collection[str] = (),
) -> str:
    """The parsed flags as a YAML config file (keys in flag order), ``secrets`` and URL passwords hidden."""
    import yaml

    out: dict[str, Any] = {}
    for key, action in _flag_actions(parser).items():
        if key in out:
            continue
        value = getattr(args, action.dest, None)
        if isinstance(value, Path):
            value = str(value)
        if value is not None and action.dest in secrets:
            value = HIDDEN
        elif isinstance(value, str) and action.dest in secret_urls:
            value = hide_url_password(value)
        elif isinstance(value, list) and action.dest in secret_urls:
            value = [hide_url_password(item) if isinstance(item, str) else item for item in value]
        out[key] = value
    return str(yaml.safe_dump(out, sort_keys=False, allow_unicode=True))
