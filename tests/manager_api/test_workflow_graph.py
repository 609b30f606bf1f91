"""A workflow's steps as a graph (services.workflows.graph): pure checks, each naming the field it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from manager_api.services.errors import Invalid
from manager_api.services.workflows.graph import MAX_STEPS, check, target_steps


def step(name: str, *depends_on: str, targets: tuple[str, ...] = ("*",)) -> dict[str, Any]:
    return {"name": name, "depends_on": list(depends_on), "task": {"targets": list(targets)}}


def refusal(steps: list[dict[str, Any]]) -> str:
    with pytest.raises(Invalid) as caught:
        check(steps)
    return caught.value.message


def test_a_diamond_is_ordered_dependencies_first() -> None:
    order = check([step("d", "b", "c"), step("b", "a"), step("c", "a"), step("a")])
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d") and sorted(order) == ["a", "b", "c", "d"]


def test_a_cycle_is_named_in_dependency_order() -> None:
    assert refusal([step("a", "b"), step("b", "a")]).endswith("steps: cycle a -> b -> a")
    assert "cycle b -> c -> d -> b" in refusal([step("a"), step("b", "c"), step("c", "d"), step("d", "b", "a")])


def test_a_step_depending_on_itself_is_refused() -> None:
    assert refusal([step("a", "a")]).endswith("steps[0].depends_on: step 'a' depends on itself")


def test_a_dangling_dependency_names_the_step_and_the_unknown_name() -> None:
    assert refusal([step("a"), step("b", "a"), step("c", "x")]).endswith("steps[2].depends_on: unknown step 'x'")


def test_names_must_be_unique() -> None:
    assert refusal([step("a"), step("a")]).endswith("steps[1].name: step name 'a' is used twice")


def test_succeeded_on_must_name_an_ancestor() -> None:
    ok = [step("a"), step("b", "a"), step("c", "b", targets=("succeeded_on:a",))]
    assert check(ok)[-1] == "c"  # a grandparent is an ancestor
    sibling = [step("a"), step("b"), step("c", "a", targets=("succeeded_on:b",))]
    assert "steps[2].task.targets: 'succeeded_on:b' needs step 'b'" in refusal(sibling)
    assert refusal([step("a", targets=("succeeded_on:zz",))]).endswith("steps[0].task.targets: unknown step 'zz'")


def test_sizes() -> None:
    assert refusal([]).endswith("steps: a workflow needs at least one step")
    assert "at most" in refusal([step(f"s{i}") for i in range(MAX_STEPS + 1)])
    chain = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, MAX_STEPS)]
    assert check(chain) == [f"s{i}" for i in range(MAX_STEPS)]  # no recursion limit on a deep chain


def test_target_steps() -> None:
    assert target_steps(["web-01", "succeeded_on:a", "succeeded_on:b"]) == ["a", "b"]
