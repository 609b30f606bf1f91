"""The progress line: redrawn in place on a terminal, plain changed lines elsewhere, never tearing output."""

from __future__ import annotations

import io

import pytest

from corral_cli.progress import CLEAR_LINE, ProgressLine


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
