"""A workflow's steps as a graph: the checks made before anything is written, and the order they give.

Pure logic on the validated step bodies (dicts with ``name``, ``depends_on``, ``task``): each problem is an
Invalid naming the field as ``steps[i].<field>``, so the caller answers 400 and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from manager_api.services.errors import Invalid

SUCCEEDED_ON = "succeeded_on:"
"""A target item ``succeeded_on:X``: the nodes where step X's task succeeded (X must be an ancestor)."""

MAX_STEPS = 1000


def target_steps(targets: Iterable[str]) -> list[str]:
    """The step names a task's targets refer to through ``succeeded_on:X``."""
    return [target[len(SUCCEEDED_ON) :] for target in targets if target.startswith(SUCCEEDED_ON)]


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"Invalid request format: {field}: {message}", {"errors": {field: [message]}})


def check(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """Check names unique, dependencies known and acyclic, ``succeeded_on:`` targets on ancestors; returns the
    step names in an order where every step comes after those it depends on."""
    if not steps:
        raise _invalid("steps", "a workflow needs at least one step")
    if len(steps) > MAX_STEPS:
        raise _invalid("steps", f"at most {MAX_STEPS} steps")
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step["name"] in index:
            raise _invalid(f"steps[{i}].name", f"step name '{step['name']}' is used twice")
        index[step["name"]] = i
    for i, step in enumerate(steps):
        for name in step["depends_on"]:
            if name not in index:
                raise _invalid(f"steps[{i}].depends_on", f"unknown step '{name}'")
            if name == step["name"]:
                raise _invalid(f"steps[{i}].depends_on", f"step '{name}' depends on itself")
    order = _order(steps, index)
    ancestors = _ancestors(steps, index, order)
    for i, step in enumerate(steps):
        for name in target_steps(step["task"]["targets"]):
            if name not in index:
                raise _invalid(f"steps[{i}].task.targets", f"unknown step '{name}'")
            if name not in ancestors[step["name"]]:
                raise _invalid(
                    f"steps[{i}].task.targets",
                    f"'{SUCCEEDED_ON}{name}' needs step '{name}' among the steps this one depends on",
                )
    return order


def _order(steps: Sequence[Mapping[str, Any]], index: Mapping[str, int]) -> list[str]:
    """A topological order (depth-first); a cycle is an Invalid naming it, ``a -> b -> a``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    order: list[str] = []
    for root in index:
        if state.get(root):
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(steps[index[root]]["depends_on"])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                done = path.pop()
                stack.pop()
                state[done] = 2
                order.append(done)
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise _invalid("steps", "cycle " + " -> ".join(cycle))
            if state.get(nxt) == 2:
                continue
            state[nxt] = 1
            path.append(nxt)
            stack.append(iter(steps[index[nxt]]["depends_on"]))
    return order


def _ancestors(
    steps: Sequence[Mapping[str, Any]], index: Mapping[str, int], order: Sequence[str]
) -> dict[str, set[str]]:
    """Every step's ancestors (the steps it depends on, directly or not)."""
    out: dict[str, set[str]] = {}
    for name in order:  # dependencies first
        found: set[str] = set()
        for dep in steps[index[name]]["depends_on"]:
            found.add(dep)
            found |= out[dep]
        out[name] = found
    return out
