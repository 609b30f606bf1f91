"""Shell completion of `corral` (issue 14): click's own, switched on by _CORRAL_COMPLETE, as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CORRAL = str(Path(sys.executable).parent / "corral")


def complete(instruction: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL],
        env={**os.environ, **env, "_CORRAL_COMPLETE": instruction},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_each_shell_gets_a_completion_script() -> None:
    for shell, marker in (
        ("bash", "complete -o nosort -F _corral_completion corral"),
        ("zsh", "#compdef corral"),
        ("fish", "complete --no-files --command corral"),
    ):
        answer = complete(f"{shell}_source")
        assert answer.returncode == 0, answer.stderr
        assert marker in answer.stdout, (shell, answer.stdout)


def test_a_subcommand_and_its_options_complete() -> None:
    answer = complete("bash_complete", COMP_WORDS="corral no", COMP_CWORD="1")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["plain,node", "plain,nodes"]
    answer = complete("bash_complete", COMP_WORDS="corral nodes --q", COMP_CWORD="2")
    assert answer.stdout.split() == ["plain,--query"]


def test_bash_completes_through_the_sourced_script() -> None:
    """What a user's shell does: source the script, then Tab calls its function with COMP_WORDS set."""
    script = (
        'eval "$(_CORRAL_COMPLETE=bash_source "$CORRAL")"; '
        'COMP_WORDS=(corral sched); COMP_CWORD=1; _corral_completion "$CORRAL"; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    answer = subprocess.run(
        ["bash", "-c", script], env={**os.environ, "CORRAL": CORRAL}, capture_output=True, text=True, timeout=30
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["schedule"]
