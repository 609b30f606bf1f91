"""Plain-text rendering of API answers: tables, per-node results, output lines, progress."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from shared.states import NodeStatus

EMPTY = "-"
"""What a table shows for a missing value."""

STDERR_MARK = "[stderr]"
"""Put after the hostname of an output line that the command wrote to its stderr."""


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters take two, combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def cell(value: Any) -> str:
    """One table cell: None as ``-``, everything on one line."""
    if value is None or value == "":
        return EMPTY
    return str(value).replace("\r", " ").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, padded by display width; no trailing blanks."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [display_width(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], display_width(value))
    lines = []
    for row in [list(headers), *cells]:
        padded = [v + " " * (widths[i] - display_width(v)) for i, v in enumerate(row)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def node_status(code: Any) -> str:
    """The API's 0/1 node status as a word."""
    try:
        return "online" if NodeStatus(code) is NodeStatus.ONLINE else "offline"
    except ValueError:
        return str(code)


def nodes_table(nodes: Sequence[Mapping[str, Any]]) -> str:
    """`corral node list` (and `corral nodes`): one row per node."""
    rows = [
        (
            n.get("id"),
            n.get("hostname"),
            n.get("ip"),
            node_status(n.get("status")),
            n.get("resources"),
            n.get("last_heartbeat"),
        )
        for n in nodes
    ]
    return table(("ID", "HOSTNAME", "IP", "STATUS", "RESOURCES", "LAST HEARTBEAT"), rows)


def deployment_summary(dep: Mapping[str, Any]) -> str:
    """The head lines of `corral deployment`."""
    return "\n".join(
        [
            f"deployment {dep.get('id')}  template {dep.get('name')}",
            f"state {dep.get('state')} (status {dep.get('status')})  created {cell(dep.get('created_at'))}"
            f"  stopped {cell(dep.get('stopped_at'))}",
        ]
    )


def deployment_tasks_table(tasks: Sequence[Mapping[str, Any]]) -> str:
    """`corral deployment`: one row per deployment task."""
    rows = []
    for t in tasks:
        node = t.get("node") or {}
        rows.append(
            (
                t.get("id"),
                t.get("name"),
                t.get("group"),
                node.get("hostname"),
                t.get("pid"),
                t.get("state"),
                t.get("exit_code"),
                t.get("started_at"),
                t.get("ended_at"),
                t.get("error"),
            )
        )
    return table(("ID", "NAME", "GROUP", "NODE", "PID", "STATE", "EXIT", "STARTED", "ENDED", "ERROR"), rows)


def deployment_progress(tasks: Sequence[Mapping[str, Any]]) -> str:
    """One line counting a deployment's deployment tasks by state, for `corral deploy --wait`."""
    counts: dict[str, int] = {}
    for t in tasks:
        state = str(t.get("state"))
        counts[state] = counts.get(state, 0) + 1
    running = counts.get("RUNNING", 0) + counts.get("COMPLETED", 0)
    detail = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))
    return f"{running}/{len(tasks)} tasks up ({detail or 'no tasks'})"


def duration(milliseconds: Any) -> str:
    """An execution time in ms as ``850 ms``, ``12.3 s`` or ``4m05s``."""
    if milliseconds is None:
        return EMPTY
    ms = int(milliseconds)
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


def host_label(host: Mapping[str, Any]) -> str:
    """The name to show for a task's node: its hostname, else what the user targeted."""
    return str(host.get("hostname") or host.get("target") or host.get("host_id") or "?")


def results_table(hosts: Sequence[Mapping[str, Any]]) -> str:
    """Every node's result of a fleet task."""
    rows = [
        (
            host_label(h),
            h.get("ip"),
            h.get("status"),
            h.get("exit_code"),
            duration(h.get("execution_time")),
            h.get("error_message"),
        )
        for h in hosts
    ]
    return table(("NODE", "IP", "STATUS", "EXIT", "TIME", "ERROR"), rows)


def progress_counts(task: Mapping[str, Any]) -> dict[str, int]:
    """A task's progress figures, from ``progress`` or, failing that, from its hosts."""
    progress = task.get("progress")
    if isinstance(progress, Mapping):
        return {k: int(progress.get(k) or 0) for k in ("total", "ended", "succeeded", "failed", "running")}
    hosts = task.get("hosts") or []
    statuses = [h.get("status") for h in hosts]
    ended = [s for s in statuses if s not in ("pending", "running")]
    return {
        "total": len(statuses),
        "ended": len(ended),
        "succeeded": statuses.count("succeeded"),
        "failed": len(ended) - statuses.count("succeeded"),
        "running": statuses.count("running"),
    }


def task_progress(task: Mapping[str, Any]) -> str:
    """The live progress line of `corral run`."""
    c = progress_counts(task)
    return f"{c['ended']}/{c['total']} ended  {c['succeeded']} succeeded  {c['failed']} failed  {c['running']} running"


def task_summary(task: Mapping[str, Any]) -> str:
    """The head lines of `corral tasks show` (a fleet task)."""
    lines = [
        f"task {task.get('task_id')}  {task.get('name')}",
        f"status {task.get('status')}  {task_progress(task)}",
        f"command {task.get('command')}",
        f"targets {', '.join(map(str, task.get('targets') or [])) or EMPTY}  timeout {task.get('timeout')} s",
        f"created {cell(task.get('created_at'))} by {cell(task.get('created_by'))}"
        f"  started {cell(task.get('started_at'))}  finished {cell(task.get('finished_at'))}",
    ]
    if task.get("canceled_at"):
        lines.append(f"canceled {task['canceled_at']} by {cell(task.get('canceled_by'))}")
    return "\n".join(lines)


def tasks_table(tasks: Sequence[Mapping[str, Any]]) -> str:
    """`corral tasks list`: one row per fleet task."""
    rows = []
    for t in tasks:
        c = progress_counts(t)
        rows.append(
            (
                t.get("task_id"),
                t.get("name"),
                t.get("status"),
                f"{c['ended']}/{c['total']}",
                c["failed"],
                t.get("created_by"),
                t.get("created_at"),
            )
        )
    return table(("ID", "NAME", "STATUS", "ENDED", "FAILED", "CREATED BY", "CREATED"), rows)


def output_line(hostname: str, stream: str, line: str, width: int = 0) -> str:
    """``hostname | line``; a line the command wrote to stderr has ``[stderr]`` after the hostname."""
    label = f"{hostname} {STDERR_MARK}" if stream == "stderr" else hostname
    return f"{label}{' ' * max(0, width - display_width(label))} | {line}"


def label_width(hostnames: Sequence[str]) -> int:
    """The column width that aligns the bars of output lines from these nodes (stderr-marked or not)."""
    return max((display_width(h) for h in hostnames), default=0)


def host_output(host: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A host's stored stdout then stderr as ``(stream, line)`` pairs, with a note when capped."""
    pairs: list[tuple[str, str]] = []
    for stream in ("stdout", "stderr"):
        text = host.get(stream) or ""
        pairs += [(stream, line) for line in text.splitlines()]
        if host.get(f"{stream}_truncated"):
            pairs.append((stream, f"... ({stream} truncated)"))
    return pairs


def succeeded(task: Mapping[str, Any]) -> bool:
    """Whether every targeted node ran the command and exited 0 (a task on no node did not succeed)."""
    hosts = task.get("hosts") or []
    return bool(hosts) and all(h.get("status") == "succeeded" for h in hosts)


def page_footer(answer: Mapping[str, Any], noun: str, page: int, page_size: int) -> str:
    """`page 1 of 3, 42 template(s)` under a paged list (the API's ``page_size``, or ``size`` for tasks)."""
    total = int(answer.get("total") or 0)
    size = int(answer.get("page_size") or answer.get("size") or page_size)
    pages = max(1, -(-total // max(size, 1)))
    return f"page {answer.get('page', page)} of {pages}, {total} {noun}"


def count(value: Any) -> Any:
    """A count the API gives as a number or as the list itself."""
    return len(value) if isinstance(value, list | tuple) else value


def state_counts(counts: Mapping[str, Any] | None) -> str:
    """``{"RUNNING": 2, "FAILED": 1}`` as ``1 failed, 2 running``."""
    return ", ".join(f"{n} {str(state).lower()}" for state, n in sorted((counts or {}).items()) if n) or EMPTY


def templates_table(templates: Sequence[Mapping[str, Any]]) -> str:
    """`corral template list`: one row per template."""
    rows = [
        (t.get("name"), count(t.get("groups")), count(t.get("tasks")), count(t.get("deployments")), t.get("created_at"))
        for t in templates
    ]
    return table(("NAME", "GROUPS", "TASKS", "DEPLOYMENTS", "CREATED"), rows)


def deployments_table(deployments: Sequence[Mapping[str, Any]]) -> str:
    """`corral deployment list`: one row per deployment, its tasks counted by state."""
    rows = [
        (
            d.get("id"),
            d.get("name"),
            d.get("state"),
            d.get("task_count"),
            state_counts(d.get("task_states")),
            d.get("created_at"),
            d.get("stopped_at"),
        )
        for d in deployments
    ]
    return table(("ID", "TEMPLATE", "STATE", "TASKS", "TASK STATES", "CREATED", "STOPPED"), rows)


def schedule_when(schedule: Mapping[str, Any]) -> str:
    """A schedule's trigger: its crontab line, or `every 60s`."""
    if schedule.get("cron"):
        return str(schedule["cron"])
    if schedule.get("interval") is not None:
        return f"every {schedule['interval']}s"
    return EMPTY


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


def schedules_table(schedules: Sequence[Mapping[str, Any]]) -> str:
    """`corral schedule list`: one row per schedule."""
    rows = [
        (
            s.get("name"),
            s.get("id"),
            schedule_when(s),
            s.get("next_run_at"),
            s.get("last_run_at"),
            yes_no(s.get("paused")),
        )
        for s in schedules
    ]
    return table(("NAME", "ID", "WHEN", "NEXT RUN", "LAST RUN", "PAUSED"), rows)


def schedule_summary(schedule: Mapping[str, Any]) -> str:
    """`corral schedule show|create`: what it runs where, when, and what it last fired."""
    lines = [
        f"schedule {schedule.get('name')}  {schedule.get('id')}",
        f"when {schedule_when(schedule)} (UTC)  paused {yes_no(schedule.get('paused'))}"
        # Its next run is the agents' to know: the manager shows none.
        + ("  fired by the target nodes' agents" if schedule.get("on_agent") else ""),
        f"command {schedule.get('command')}"
        # Secret parameters are answered as "(secret)": never a value.
        + (f"  params {json.dumps(schedule.get('params') or {})}" if schedule.get("script") else ""),
        f"targets {', '.join(map(str, schedule.get('targets') or [])) or EMPTY}  timeout {schedule.get('timeout')} s"
        f"  env {', '.join(schedule.get('env_keys') or []) or EMPTY}"
        # The names only: the API never answers a value.
        + (f"  secret env {', '.join(schedule['secretEnv'])}" if schedule.get("secretEnv") else ""),
        f"next run {cell(schedule.get('next_run_at'))}  last run {cell(schedule.get('last_run_at'))}"
        f"  last task {cell(schedule.get('last_task_id'))}",
        f"created {cell(schedule.get('created_at'))} by {cell(schedule.get('created_by'))}",
    ]
    if schedule.get("description"):
        lines.append(f"description {schedule['description']}")
    recent = schedule.get("recent_task_ids")
    if recent:
        lines.append("recent tasks (`corral tasks show ID`):")
        lines += [f"  {task_id}" for task_id in recent]
    return "\n".join(lines)


def audit_detail(detail: Any) -> str:
    """An audit entry's detail on one line: ``key=value`` pairs, lists and objects as compact JSON."""
    if not isinstance(detail, Mapping):
        return cell(detail if detail != {} else None)
    parts = []
    for key, value in detail.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(f"{key}={text}")
    return " ".join(parts) or EMPTY


def audit_table(entries: Sequence[Mapping[str, Any]]) -> str:
    """`corral audit`: one row per entry, newest first as the API gives them."""
    rows = [
        (e.get("at"), e.get("actor"), e.get("action"), e.get("target"), audit_detail(e.get("detail"))) for e in entries
    ]
    return table(("AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"), rows)


def labels_table(node: Mapping[str, Any]) -> str:
    """A node's effective labels and where each comes from (`api` wins over the agent's own)."""
    api = node.get("api_labels") or {}
    rows = [(key, value, "api" if key in api else "agent") for key, value in sorted((node.get("labels") or {}).items())]
    return table(("LABEL", "VALUE", "FROM"), rows)


def tags_table(node: Mapping[str, Any]) -> str:
    """A node's tags and where they come from: the API's, once set, replace the agent's."""
    source = "agent" if node.get("api_tags") is None else "api"
    return table(("TAG", "FROM"), [(tag, source) for tag in node.get("tags") or []])


def node_documents_table(nodes: Sequence[Mapping[str, Any]]) -> str:
    """`corral nodes -q QUERY`: the nodes of GET /api/nodes?q= in the columns of `corral nodes`, and their tags."""
    rows = [
        (
            n.get("id"),
            n.get("hostname"),
            n.get("ip"),
            n.get("status"),
            f"cpu_usage_percent:{round(n.get('cpu_usage_percent') or 0)},"
            f"memory_usage_percent:{round(n.get('memory_usage_percent') or 0)}",
            n.get("last_heartbeat"),
            ",".join(n.get("tags") or []) or EMPTY,
        )
        for n in nodes
    ]
    return table(("ID", "HOSTNAME", "IP", "STATUS", "RESOURCES", "LAST HEARTBEAT", "TAGS"), rows)


UPDATE_KEYS = ("changed", "added", "removed", "unchanged")
"""The component lists of a business update's answer, in the order `corral business update` prints them."""


def update_summary(answer: Mapping[str, Any]) -> str:
    """`changed: worker` ... one line per list of the update's answer; the API's message when it gave none."""
    if not any(key in answer for key in UPDATE_KEYS):
        return str(answer.get("message") or "updating")
    return "\n".join(f"{key}: {', '.join(map(str, answer.get(key) or [])) or EMPTY}" for key in UPDATE_KEYS)
