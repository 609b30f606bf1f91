"""services.scripts.params: declared parameters at registration, values at each run (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from manager_api.services.errors import Invalid
from manager_api.services.scripts import params

DECLARED = params.check_declared(
    [
        {"name": "who", "type": "string", "required": True},
        {"name": "count", "type": "int", "default": 2},
        {"name": "ratio", "type": "float"},
        {"name": "loud", "type": "bool", "default": False},
        {"name": "token", "type": "string", "secret": True},
    ]
)


def test_declared_get_their_full_form() -> None:
    assert DECLARED[0] == {"name": "who", "type": "string", "required": True, "secret": False, "description": ""}
    assert DECLARED[1]["default"] == 2 and DECLARED[1]["required"] is False
    assert params.check_declared([{"name": "x"}])[0]["type"] == "string"


@pytest.mark.parametrize(
    ("declared", "field"),
    [
        ({"a": 1}, "params:"),
        ([{"name": "1x"}], "params[0].name"),
        ([{"name": "a-b"}], "params[0].name"),
        ([{"name": "x"}, {"name": "X"}], "params[1].name"),
        ([{"name": "x", "type": "list"}], "params[0].type"),
        ([{"name": "x", "type": "int", "default": "3"}], "params[0].default"),
        ([{"name": "x", "type": "int", "default": True}], "params[0].default"),
        ([{"name": "x", "type": "bool", "default": 1}], "params[0].default"),
        ([{"name": "x", "type": "int", "secret": True}], "params[0].secret"),
        ([{"name": "x", "secret": True, "default": "pw"}], "params[0].default"),
        ([{"name": "x", "required": "yes"}], "params[0].required"),
        ([{"name": "x", "colour": "red"}], "params[0].colour"),
        (["x"], "params[0]"),
        ([{"name": "x", "type": "int", "default": 10**30}], "params[0].default: out of the 64-bit int range"),
    ],
)
def test_bad_declarations_name_their_field(declared: Any, field: str) -> None:
    with pytest.raises(Invalid) as caught:
        params.check_declared(declared)
    assert caught.value.message.startswith(field)


def test_values_are_checked_and_defaults_filled() -> None:
    values = params.resolve(DECLARED, {"who": "ann", "ratio": 1, "token": "s3cret", "loud": True})
    assert values.plain == {"who": "ann", "count": "2", "ratio": "1", "loud": "true"}
    assert values.secret == {"token": "s3cret"}
    assert params.arguments(values.plain) == ["--who=ann", "--count=2", "--ratio=1", "--loud=true"]
    assert params.env_name("who") == "CORRAL_PARAM_WHO"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "params.who: required"),
        ({"who": None}, "params.who: required"),
        ({"who": "a", "nope": 1}, "params.nope: unknown parameter"),
        ({"who": 3}, "params.who: must be of type string"),
        ({"who": "a", "count": "3"}, "params.count: must be of type int"),
        ({"who": "a", "count": True}, "params.count: must be of type int"),
        ({"who": "a", "count": 1.5}, "params.count: must be of type int"),
        ({"who": "a", "count": 2**63}, "params.count: out of the 64-bit int range"),
        ({"who": "a", "count": -(2**63) - 1}, "params.count: out of the 64-bit int range"),
        ({"who": "a", "loud": 1}, "params.loud: must be of type bool"),
        ({"who": "a", "loud": "true"}, "params.loud: must be of type bool"),
        ({"who": "a", "ratio": False}, "params.ratio: must be of type float"),
        ({"who": "a\x00"}, "params.who: at most"),
        (["who"], "params: must be an object"),
    ],
)
def test_bad_values_name_the_parameter(given: Any, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        params.resolve(DECLARED, given)
    assert caught.value.message.startswith(message)


def test_no_declared_params_take_none() -> None:
    assert params.resolve([], None) == params.Values({}, {})
    with pytest.raises(Invalid, match="declared: none"):
        params.resolve([], {"x": 1})
