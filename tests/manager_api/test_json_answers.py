"""The API's JSON encoder (api/json_provider.py): orjson's speed, the json module's answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from flask import Flask, jsonify


@dataclass
class Point:
    x: int
    y: str


def test_answers_read_as_the_json_module_wrote_them(app: Flask) -> None:
    value = {
        "order": {"zeta": 1, "alpha": 2},  # kept as built, not sorted
        "name": "nœud-été",  # written as is, not escaped
        "ints": {1: "one"},  # integer keys become strings
        "when": datetime(2026, 12, 3, 18, 0, 0),  # an HTTP date, as Flask's own encoder writes it
        "amount": Decimal("1.50"),
        "point": Point(1, "a"),
        "big": 2**70,  # past orjson's 64 bits: the json module takes over
    }
    with app.test_request_context():
        answer = jsonify(value)
    text = answer.get_data(as_text=True)
    assert answer.mimetype == "application/json"
    assert text.index('"zeta"') < text.index('"alpha"')
    assert "nœud-été" in text
    assert json.loads(text) == {
        "order": {"zeta": 1, "alpha": 2},
        "name": "nœud-été",
        "ints": {"1": "one"},
        "when": "Thu, 03 Dec 2026 18:00:00 GMT",
        "amount": "1.50",
        "point": {"x": 1, "y": "a"},
        "big": 2**70,
    }
