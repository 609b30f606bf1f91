"""The real `corral script` verbs against a real manager and agent: push a file and a directory with declared
parameters, list, show, run with typed values, bad values, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral_cli.scripts import parse_declaration, typed
from tests.corral_cli.stack import HOST, Stack, ok

pytestmark = pytest.mark.e2e


def test_declarations_and_values_are_typed() -> None:
    assert parse_declaration("who:string:required:secret") == {
        "name": "who",
        "type": "string",
        "required": True,
        "secret": True,
    }
    assert parse_declaration("url:string:default=http://x:1/") == {
        "name": "url",
        "type": "string",
        "default": "http://x:1/",
    }
    assert parse_declaration("n:int:default=3")["default"] == 3
    assert [typed("bool", v, "x") for v in ("yes", "FALSE", "1")] == [True, False, True]
    assert typed("float", "1.5", "x") == 1.5


def test_push_list_show_run_delete(stack: Stack, tmp_path: Path) -> None:
    body = tmp_path / "hello.sh"
    body.write_text('echo "hi $CORRAL_PARAM_WHO n=$CORRAL_PARAM_N $*"\n')
    pushed = ok(
        stack.corral(
            "script",
            "push",
            "hello",
            "1",
            str(body),
            "--interpreter",
            "sh",
            "--param",
            "who:string:required",
            "--param",
            "n:int:default=1",
            "--json",
        )
    )
    assert json.loads(pushed.stdout)["kind"] == "body"
    tool = tmp_path / "tool"
    (tmp_path / "tool" / "lib").mkdir(parents=True)
    (tool / "run.sh").write_text('. "$(dirname "$0")/lib/x.sh"; echo "zip $X"\n')
    (tool / "lib" / "x.sh").write_text("X=42\n")
    ok(stack.corral("script", "push", "tool", "2", str(tool), "--interpreter", "sh", "--entry", "run.sh"))

    listed = ok(stack.corral("script", "list")).stdout
    assert "hello" in listed and "zip:run.sh" in listed
    assert ["who", "string", "yes", "no", "-"] in [
        line.split() for line in ok(stack.corral("script", "show", "hello@1")).stdout.splitlines()
    ]

    ran = ok(stack.corral("script", "run", "hello@1", "--on", HOST, "--param", "who=ann", "--param", "n=5"))
    assert f"{HOST} | hi ann n=5 --who=ann --n=5" in ran.stdout, ran.stdout
    assert "zip 42" in ok(stack.corral("script", "run", "tool@2", "--on", HOST)).stdout
    assert "not an int" in ok(stack.corral("script", "run", "hello@1", "--on", HOST, "--param", "n=x"), 2).stderr
    assert "params.who: required" in ok(stack.corral("script", "run", "hello@1", "--on", HOST), 2).stderr
    ok(stack.corral("script", "delete", "tool@2"))
    assert "tool" not in ok(stack.corral("script", "list")).stdout


def test_schedule_create_runs_a_script_with_typed_params(stack: Stack, tmp_path: Path) -> None:
    body = tmp_path / "greet.sh"
    body.write_text('echo "greet $CORRAL_PARAM_WHO n=$CORRAL_PARAM_N"\n')
    declared = ("--param", "who:string:required", "--param", "n:int:default=1", "--param", "key:string:secret")
    ok(stack.corral("script", "push", "greet", "1", str(body), "--interpreter", "sh", *declared))
    made = ok(
        stack.corral(
            "schedule",
            "create",
            "greet-hourly",
            "--script",
            "greet@1",
            "--param",
            "who=ann",
            "--param",
            "n=5",
            "--param",
            "key=s3cret",
            "--on",
            HOST,
            "--every",
            "3600",
            "--json",
        )
    )
    schedule = json.loads(made.stdout)
    assert schedule["script"] == "greet@1" and schedule["command"] == "script:greet@1"
    assert schedule["params"] == {"who": "ann", "n": 5, "key": "(secret)"}  # n typed as the script declares it
    shown = ok(stack.corral("schedule", "show", "greet-hourly")).stdout
    assert 'command script:greet@1  params {"who": "ann", "n": 5, "key": "(secret)"}' in shown, shown
    assert "s3cret" not in shown
    base = ("schedule", "create", "bad", "--on", HOST, "--every", "60")
    assert "either --command CMD or --script" in ok(stack.corral(*base), 2).stderr
    assert (
        "either --command CMD or --script" in ok(stack.corral(*base, "--command", "x", "--script", "greet@1"), 2).stderr
    )
    assert "--param goes with --script" in ok(stack.corral(*base, "--command", "x", "--param", "n=1"), 2).stderr
    assert "not an int" in ok(stack.corral(*base, "--script", "greet@1", "--param", "n=x"), 2).stderr
    assert "params.who: required" in ok(stack.corral(*base, "--script", "greet@1"), 2).stderr
    # Named by a schedule: not deleted until the schedule is.
    assert "used by schedules: greet-hourly" in ok(stack.corral("script", "delete", "greet@1"), 2).stderr
    ok(stack.corral("schedule", "delete", "greet-hourly"))
    ok(stack.corral("script", "delete", "greet@1"))
