"""The progress line: redrawn in place on a terminal, plain changed lines elsewhere, never tearing output."""

from __future__ import annotations

import io

import pytest

from corral_cli.progress import CLEAR_LINE, ProgressLine, Wait


def test_live_line_is_redrawn_and_moves_below_output(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, live=True)
    progress.update("0/2 ended")
    progress.update("0/2 ended")  # unchanged: not written again
    progress.echo("web-1 | hi")
    progress.update("1/2 ended")
    progress.close()
    assert capsys.readouterr().out == "web-1 | hi\n"
    assert stream.getvalue() == f"{CLEAR_LINE}0/2 ended{CLEAR_LINE}0/2 ended{CLEAR_LINE}1/2 ended{CLEAR_LINE}"


def test_off_a_terminal_each_change_is_one_plain_line() -> None:
    stream = io.StringIO()
    progress = ProgressLine(stream, live=False)
    for text in ("0/2 up", "0/2 up", "2/2 up"):
        progress.update(text)
    progress.close()
    assert stream.getvalue() == "0/2 up\n2/2 up\n"
    assert "\x1b" not in stream.getvalue()


class Countdown(Wait[int]):
    """Over at 0, looked at from ``start`` down; exit 0 at the end, and it says so."""

    poll_seconds = 0.0

    def __init__(self, start: int) -> None:  # no client: look() is its own
        self.left = start
        self.looks = 0

    def look(self) -> int:
        self.looks += 1
        self.left -= 1
        return self.left

    def line(self, seen: int) -> str:
        return f"{seen} left"

    def over(self, seen: int) -> bool:
        return seen <= 0

    def report(self, seen: int) -> int:
        print(f"done at {seen}")
        return 0

    def late(self, seen: int, timeout: float) -> str:
        return f"{seen} left after {timeout:g} s"


def test_wait_reports_once_over(capsys: pytest.CaptureFixture[str]) -> None:
    wait = Countdown(3)
    assert wait.run(timeout=60) == 0
    assert wait.looks == 3
    captured = capsys.readouterr()
    assert captured.out == "done at 0\n"
    assert captured.err == "2 left\n1 left\n0 left\n"


def test_wait_gives_up_after_the_timeout_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    wait = Countdown(10**9)
    assert wait.run(timeout=-1) == 1  # past the deadline at the first look
    assert wait.looks == 1
    assert capsys.readouterr().err.endswith(f"{10**9 - 1} left after -1 s\n")
