"""A script's declared parameters and the values a run gives them: pure checks, no database, no Redis.

Declared at registration, each ``{"name", "type", "required", "default", "secret", "description"}``; checked at
each run before anything is written or sent. A run's values are strict JSON of the declared type (a bool is
true/false, an int is not a bool, a float takes an int); they reach the script as text (as_text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from manager_api.services.errors import Invalid

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A parameter's name: it becomes the environment variable CORRAL_PARAM_<NAME> and the argument --<name>=."""

TYPES = ("string", "int", "float", "bool")
MAX_PARAMS = 64
MAX_NAME = 64
MAX_VALUE = 65536
ENV_PREFIX = "CORRAL_PARAM_"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""An int parameter's range: what a script's language reads as an integer without surprise (64 bits)."""


class Values(NamedTuple):
    """A run's parameters as the node gets them: plain ones (shown in the task) and secret ones (never shown)."""

    plain: dict[str, str]  # name -> value as text
    secret: dict[str, str]


def _is_type(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # no NaN
    return False


def _check_value(where: str, kind: str, value: Any) -> None:
    """Invalid naming ``where`` unless ``value`` is of type ``kind`` (and, an int, within 64 bits)."""
    if not _is_type(kind, value):
        raise Invalid(f"{where}: must be of type {kind}")
    if kind == "int" and not INT_MIN <= value <= INT_MAX:
        raise Invalid(f"{where}: out of the 64-bit int range")


def check_declared(declared: Any) -> list[dict[str, Any]]:
    """The declared parameters in their full form, or Invalid naming the first bad field (``params[1].type``)."""
    if not isinstance(declared, list):
        raise Invalid("params: must be a list of parameters")
    if len(declared) > MAX_PARAMS:
        raise Invalid(f"params: at most {MAX_PARAMS} parameters")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(declared):
        where = f"params[{index}]"
        if not isinstance(item, dict):
            raise Invalid(f"{where}: must be an object")
        unknown = sorted(set(item) - {"name", "type", "required", "default", "secret", "description"})
        if unknown:
            raise Invalid(f"{where}.{unknown[0]}: unknown field")
        name = item.get("name")
        if not isinstance(name, str) or len(name) > MAX_NAME or not NAME.match(name):
            raise Invalid(f"{where}.name: must match {NAME.pattern} (at most {MAX_NAME} characters)")
        if name.upper() in seen:  # one environment variable per name
            raise Invalid(f"{where}.name: {name!r} is declared twice (names are compared in upper case)")
        seen.add(name.upper())
        kind = item.get("type", "string")
        if kind not in TYPES:
            raise Invalid(f"{where}.type: must be one of {', '.join(TYPES)}")
        required, secret = item.get("required", False), item.get("secret", False)
        if not isinstance(required, bool):
            raise Invalid(f"{where}.required: must be true or false")
        if not isinstance(secret, bool):
            raise Invalid(f"{where}.secret: must be true or false")
        if secret and kind != "string":
            raise Invalid(f"{where}.secret: only a string parameter may be secret")
        description = item.get("description", "")
        if not isinstance(description, str) or len(description) > 1000:
            raise Invalid(f"{where}.description: must be a string of at most 1000 characters")
        param: dict[str, Any] = {
            "name": name,
            "type": kind,
            "required": required,
            "secret": secret,
            "description": description,
        }
        if "default" in item and item["default"] is not None:
            default = item["default"]
            if secret:
                raise Invalid(f"{where}.default: a secret parameter takes no default (it would be stored in clear)")
            _check_value(f"{where}.default", kind, default)
            if kind == "string" and len(default) > MAX_VALUE:
                raise Invalid(f"{where}.default: at most {MAX_VALUE} characters")
            param["default"] = default
        out.append(param)
    return out


def as_text(value: Any) -> str:
    """How a value reaches the script: true/false, decimal numbers, strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve(declared: Sequence[Mapping[str, Any]], given: Any) -> Values:
    """The values of a run: ``given`` checked against ``declared``, defaults filled in; Invalid naming the
    parameter (``params.count: must be of type int``) otherwise."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise Invalid("params: must be an object of parameter values")
    by_name = {param["name"]: param for param in declared}
    for name in sorted(given):
        if name not in by_name:
            raise Invalid(f"params.{name}: unknown parameter (declared: {', '.join(sorted(by_name)) or 'none'})")
    values = Values({}, {})
    for param in declared:
        name = param["name"]
        if name in given and given[name] is not None:
            value = given[name]
            _check_value(f"params.{name}", param["type"], value)
            if isinstance(value, str) and (len(value) > MAX_VALUE or "\x00" in value):
                raise Invalid(f"params.{name}: at most {MAX_VALUE} characters, no NUL")
        elif "default" in param:
            value = param["default"]
        elif param["required"]:
            raise Invalid(f"params.{name}: required")
        else:
            continue
        (values.secret if param["secret"] else values.plain)[name] = as_text(value)
    return values


def env_name(name: str) -> str:
    """The environment variable a parameter is given in."""
    return ENV_PREFIX + name.upper()


def arguments(plain: Mapping[str, str]) -> list[str]:
    """The script's arguments: ``--name=value`` per plain parameter, in the order given. Secret parameters are
    in the environment only: arguments are visible to every user of the host (ps)."""
    return [f"--{name}={value}" for name, value in plain.items()]
