"""The run states of a supervised process and its restart policy: pure logic, driven by hand or by the mock driver."""

from __future__ import annotations

import logging

import pytest

from worker_agent.components.records import ComponentRecord
from worker_agent.deployment_tasks.restarts import (
    NO_RESTART,
    InvalidTransition,
    RestartPolicy,
    RunState,
    RunStates,
)
from worker_agent.drivers.mock import MockDriver

S = RunState


def started(policy: RestartPolicy = NO_RESTART, now: float = 0.0) -> tuple[RunStates, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    runs = RunStates("task t1", policy, on_change=lambda old, new, _reason: changes.append((old, new)))
    runs.starting()
    runs.running(now)
    return runs, changes


def test_the_default_policy_never_restarts_whatever_the_exit_code() -> None:
    for code in (0, 1, None, -9):
        runs, changes = started()
        assert runs.exited(code, 5.0) is S.EXITED
        assert changes == [(S.STOPPED, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.EXITED)]
        assert runs.exit_code == code
        assert not runs.due(1e9)


def test_failures_back_off_longer_each_time_then_turn_fatal() -> None:
    policy = RestartPolicy(retries=3, backoff_seconds=1.0, backoff_factor=2.0, max_backoff_seconds=3.0)
    runs, _changes = started(policy)
    delays = []
    now = 0.0
    for _ in range(3):
        assert runs.exited(1, now) is S.BACKOFF
        assert runs.retry_at is not None
        delays.append(runs.retry_at - now)
        assert not runs.due(runs.retry_at - 0.01)
        now = runs.retry_at
        assert runs.due(now)
        runs.starting()
        runs.running(now)
    assert delays == [1.0, 2.0, 3.0]  # doubled, then capped at max_backoff_seconds
    assert runs.exited(1, now) is S.FATAL
    assert runs.restarts == 3


def test_a_success_ends_it_unless_the_policy_restarts_on_success_too() -> None:
    runs, _changes = started(RestartPolicy(retries=5))
    assert runs.exited(0, 1.0) is S.EXITED
    always, _changes = started(RestartPolicy(retries=5, restart_on_success=True))
    assert always.exited(0, 1.0) is S.BACKOFF


def test_a_stable_run_starts_the_backoff_again_from_the_first_delay() -> None:
    runs, _changes = started(RestartPolicy(retries=2, backoff_seconds=1.0, stable_seconds=10.0))
    assert runs.exited(1, 1.0) is S.BACKOFF
    runs.starting()
    runs.running(2.0)
    assert runs.exited(1, 3.0) is S.BACKOFF and runs.restarts == 2  # ran 1 s: not stable
    runs.starting()
    runs.running(5.0)
    assert runs.exited(1, 20.0) is S.BACKOFF  # ran 15 s: a fresh count, not FATAL
    assert runs.restarts == 1
    assert runs.retry_at == 21.0


def test_a_failed_spawn_backs_off_while_retries_are_left_else_is_fatal() -> None:
    runs = RunStates("task t1", RestartPolicy(retries=1))
    runs.starting()
    assert runs.spawn_failed("no such file", 0.0) is S.BACKOFF
    runs.starting()
    assert runs.spawn_failed("no such file", 1.0) is S.FATAL
    once = RunStates("task t2")
    once.starting()
    assert once.spawn_failed("no such file", 0.0) is S.FATAL


def test_a_stop_during_the_backoff_stops_at_once_and_a_running_one_goes_through_stopping() -> None:
    runs, changes = started(RestartPolicy(retries=1))
    runs.exited(1, 0.0)
    runs.stopping()
    assert runs.state is S.STOPPED and runs.retry_at is None and not runs.due(1e9)
    running, changes = started()
    running.stopping()
    running.stopped()
    assert changes[-2:] == [(S.RUNNING, S.STOPPING), (S.STOPPING, S.STOPPED)]


def test_every_change_is_checked_and_logged_with_its_transition(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worker_agent.deployment_tasks.restarts")
    runs, _changes = started(RestartPolicy(retries=1))
    runs.exited(2, 0.0)
    assert "task t1: RUNNING -> BACKOFF (exit code 2, restart 1 in 1 s)" in caplog.text
    with pytest.raises(InvalidTransition):
        runs.change_state(S.RUNNING)  # BACKOFF must start again first
    assert runs.state is S.BACKOFF


def test_the_mock_driver_feeds_the_state_machine_through_restarts() -> None:
    """A supervision loop over the driver interface: start, inspect, back off, start again, give up."""
    driver = MockDriver()
    rec = ComponentRecord("biz-1", "web", 1, type="mock")
    runs = RunStates("web", RestartPolicy(retries=2, backoff_seconds=0.5))
    steps: list[str] = []

    def start(now: float) -> None:
        runs.starting()
        driver.start(rec, {}, [], lambda state: steps.append(state), lambda: None)
        runs.running(now)

    start(0.0)
    now = 0.0
    outcomes = []
    while runs.state not in (S.FATAL, S.EXITED):
        driver.exit(rec.key, 3)
        ended = driver.inspect(rec)
        assert ended is not None and ended.code == 3
        outcomes.append(runs.exited(ended.code, now))
        if runs.state is S.BACKOFF:
            assert runs.retry_at is not None
            now = runs.retry_at
            assert runs.due(now)
            start(now)
    assert outcomes == [S.BACKOFF, S.BACKOFF, S.FATAL]
    assert [call for call, _key in driver.calls if call == "start"] == ["start"] * 3
    assert steps == ["starting"] * 3
