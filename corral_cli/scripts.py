"""``corral script``: register, list, show, run and delete reusable scripts (issue 17)."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from shared.defaults import DEADLINE_SLACK_SECONDS

from . import formatting
from .client import REQUEST_TIMEOUT, Client
from .context import EXIT_FAILED, CommandError, client_of, echo_answer, echo_json, echo_page, page_options
from .tasks import MAX_WAIT, fleet_body, fleet_command_options, is_final, print_results, wait_final

TYPES = ("string", "int", "float", "bool")
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def typed(kind: str, text: str, what: str) -> Any:
    """``text`` as a value of ``kind`` (the API takes JSON of the declared type), or a usage error."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a{'n' if kind == 'int' else ''} {kind}", param_hint=what) from None
    if kind == "bool":
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise click.BadParameter(f"{text!r} is not true or false", param_hint=what)
    return text


def parse_declaration(spec: str) -> dict[str, Any]:
    """``name:type[:required][:secret][:default=VALUE]`` (the default is the rest of the spec) as a declared
    parameter."""
    head, sep, default = spec.partition(":default=")
    parts = head.split(":")
    name, kind = parts[0], parts[1] if len(parts) > 1 else "string"
    if kind not in TYPES:
        raise click.BadParameter(f"{spec!r}: type must be one of {', '.join(TYPES)}", param_hint="--param")
    declared: dict[str, Any] = {"name": name, "type": kind}
    for flag in parts[2:]:
        if flag not in ("required", "secret"):
            raise click.BadParameter(f"{spec!r}: {flag!r} is not required, secret or default=", param_hint="--param")
        declared[flag] = True
    if sep:
        declared["default"] = typed(kind, default, "--param")
    return declared


def zip_directory(directory: Path) -> bytes:
    """The files under ``directory`` as a zip, by their relative paths (symlinks refused: the manager would)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_symlink():
                raise CommandError(f"{path} is a symlink: a script archive holds plain files only")
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def split_ref(ref: str) -> tuple[str, str | None]:
    name, at, version = ref.rpartition("@")
    return (name, version) if at else (ref, None)


def scripts_table(scripts: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            s.get("name"),
            s.get("version"),
            s.get("interpreter"),
            s.get("kind") if s.get("kind") == "body" else f"zip:{s.get('entry')}",
            s.get("size"),
            ",".join(p.get("name", "") for p in s.get("params") or []),
            s.get("created_at"),
        )
        for s in scripts
    ]
    return formatting.table(("NAME", "VERSION", "INTERPRETER", "KIND", "BYTES", "PARAMS", "CREATED"), rows)


def script_summary(script: Mapping[str, Any]) -> str:
    kind = "body" if script.get("kind") == "body" else f"zip, entry {script.get('entry')}"
    lines = [
        f"script {script.get('name')}@{script.get('version')}  {script.get('interpreter')}  {kind}",
        f"digest {script.get('digest')}  {script.get('size')} bytes  by {script.get('created_by')}"
        f"  at {script.get('created_at')}",
    ]
    params = script.get("params") or []
    if params:
        rows = [
            (
                p.get("name"),
                p.get("type"),
                formatting.yes_no(p.get("required")),
                formatting.yes_no(p.get("secret")),
                formatting.cell(p.get("default", "")),
            )
            for p in params
        ]
        lines += ["", formatting.table(("PARAM", "TYPE", "REQUIRED", "SECRET", "DEFAULT"), rows)]
    return "\n".join(lines)


_json = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


@click.group()
def script() -> None:
    """Register, list, show, run and delete scripts.

    A script is a named, immutable version (NAME@VERSION) of a body or a zip archive with an entry point,
    run by an interpreter on target nodes as a fleet task. Its parameters reach it as environment
    (CORRAL_PARAM_<NAME>) and, unless secret, as arguments --name=value.
    """


@script.command("push")
@click.argument("name")
@click.argument("version")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--interpreter", required=True, help="sh, bash, python3 or an absolute path.")
@click.option("--entry", help="The file to run, for a directory or a .zip (relative to its root).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME:TYPE[:required][:secret][:default=V]",
    help="Declare a parameter (repeat); TYPE is string, int, float or bool.",
)
@_json
@click.pass_context
def push(
    ctx: click.Context,
    name: str,
    version: str,
    path: Path,
    interpreter: str,
    entry: str | None,
    params: Sequence[str],
    as_json: bool,
) -> None:
    """Register PATH (a file, a .zip or a directory) as script NAME version VERSION."""
    body: dict[str, Any] = {
        "name": name,
        "version": version,
        "interpreter": interpreter,
        "params": [parse_declaration(spec) for spec in params],
    }
    if path.is_dir() or path.suffix == ".zip":
        if not entry:
            raise click.BadParameter("give the file to run in the archive", param_hint="--entry")
        content = zip_directory(path) if path.is_dir() else path.read_bytes()
        body.update(archive=base64.b64encode(content).decode(), entry=entry)
    else:
        body["body"] = path.read_text()
    created = client_of(ctx).post("/api/scripts", body)
    echo_answer(created, as_json, script_summary)


@script.command("list")
@click.option("--name", help="Only scripts whose name contains this.")
@page_options("script versions")
@_json
@click.pass_context
def script_list(ctx: click.Context, name: str | None, page: int, page_size: int, as_json: bool) -> None:
    """List every script version, by name then newest first."""
    answer = client_of(ctx).get("/api/scripts", {"name": name, "page": page, "page_size": page_size})
    echo_page(answer, as_json, "scripts", scripts_table, ("script version(s)", page, page_size))


@script.command("show")
@click.argument("ref", metavar="NAME[@VERSION]")
@_json
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show a script version, or every version of NAME."""
    name, version = split_ref(ref)
    client = client_of(ctx)
    if version is None:
        answer = client.get(f"/api/scripts/{name}")
        echo_answer(answer, as_json, lambda a: scripts_table(a.get("versions") or []))
        return
    echo_answer(client.get(f"/api/scripts/{name}/{version}"), as_json, script_summary)


@script.command("delete")
@click.argument("ref", metavar="NAME@VERSION")
@click.pass_context
def delete(ctx: click.Context, ref: str) -> None:
    """Delete a script version (refused while a task not yet ended runs it)."""
    name, version = split_ref(ref)
    if version is None:
        raise click.BadParameter("give NAME@VERSION", param_hint="REF")
    client_of(ctx).call("DELETE", f"/api/scripts/{name}/{version}")
    click.echo(f"script {name}@{version} deleted")


@script.command("run")
@click.argument("ref", metavar="NAME@VERSION")
@fleet_command_options(
    on_help="Node ids, hostnames, IPs, key=value labels, `all`, or query:QUERY (as `corral run --on`).",
    timeout_help="Seconds before the script is killed on each node.",
)
@click.option("--param", "values", multiple=True, metavar="NAME=VALUE", help="A parameter's value (repeat).")
@click.option("--name", help="Fleet task name [default: script:NAME@VERSION].")
@click.option("--wait", type=click.FloatRange(0, MAX_WAIT), help="Seconds to wait for the results [default: all].")
@_json
@click.pass_context
def run(
    ctx: click.Context,
    ref: str,
    on: Sequence[str],
    timeout: int,
    env: dict[str, str],
    secret_env: dict[str, str],
    values: Sequence[str],
    name: str | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """Run script NAME@VERSION on every target node as a fleet task; print each node's result.

    Values are converted to the declared parameter types (the API checks them). Exits 1 when any node did not
    succeed.
    """
    client = client_of(ctx)
    params = typed_params(client, ref, values, "REF")
    body = fleet_body(name or f"script:{ref}", "", on, timeout, env, secret_env, script=ref, params=params)
    del body["command"]
    seconds = min(timeout + DEADLINE_SLACK_SECONDS, MAX_WAIT) if wait is None else wait
    task = client.post("/api/tasks", body, {"wait": seconds}, timeout=seconds + REQUEST_TIMEOUT)
    if wait is None and not is_final(task):
        task = wait_final(client, task["task_id"], 5.0)
    if as_json:
        echo_json(task)
    else:
        print_output(task)
        print_results(task)
    ctx.exit(0 if formatting.succeeded(task) and is_final(task) else EXIT_FAILED)


def typed_params(client: Client, ref: str, values: Sequence[str], ref_hint: str) -> dict[str, Any]:
    """The ``--param NAME=VALUE`` values of script ``ref`` (NAME@VERSION), each converted to its declared type
    (read from the API; the API checks them again)."""
    script_name, version = split_ref(ref)
    if version is None:
        raise click.BadParameter("give NAME@VERSION", param_hint=ref_hint)
    declared = {p["name"]: p for p in client.get(f"/api/scripts/{script_name}/{version}").get("params") or []}
    params: dict[str, Any] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="--param")
        kind = declared[key]["type"] if key in declared else "string"  # an unknown name: the API says so
        params[key] = typed(kind, text, f"--param {key}")
    return params


def print_output(task: Mapping[str, Any]) -> None:
    """Every node's stored output, `hostname | line`, before the results."""
    hosts = task.get("hosts") or []
    width = formatting.label_width([formatting.host_label(h) for h in hosts])
    for host in hosts:
        for stream, line in formatting.host_output(host):
            click.echo(formatting.output_line(formatting.host_label(host), stream, line, width))
