"""The fleet commands' record journal (state_file.RecordJournal): appended lines, the last of a key winning, a torn
line skipped, compaction, and the move from the older agents' commands.json."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from worker_agent import state_file
from worker_agent.fleet_commands.records import CommandRecord
from worker_agent.state_file import RecordJournal, StateFile


def journal(path: Path, legacy: StateFile[CommandRecord] | None = None) -> RecordJournal[CommandRecord]:
    return RecordJournal(path, CommandRecord, lambda rec: rec.task_id, legacy)


def test_the_last_line_of_a_record_wins_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    first = journal(path)
    a = CommandRecord(task_id="a", command="echo a")
    first.append([a], 1)
    a.status, a.pid = "running", 42
    first.append([a, CommandRecord(task_id="b", command="echo b")], 2)
    first.close()

    loaded = journal(path).load()
    assert sorted(loaded) == ["a", "b"]
    assert (loaded["a"].status, loaded["a"].pid, loaded["a"].command) == ("running", 42, "echo a")
    assert len(path.read_text().splitlines()) == 3
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_append_starts_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "commands.jsonl"
    good = json.dumps({"task_id": "a", "status": "succeeded"})
    path.write_text(good + "\n" + '{"task_id": "b", "sta')

    second = journal(path)
    assert list(second.load()) == ["a"]
    second.append([CommandRecord(task_id="c")], 2)
    second.close()
    assert sorted(journal(path).load()) == ["a", "c"]


def test_older_states_are_compacted_away_once_they_outnumber_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_file, "JOURNAL_SLACK_LINES", 5)
    path = tmp_path / "commands.jsonl"
    rec = CommandRecord(task_id="a")
    j = journal(path)
    for _ in range(7):
        j.append([rec], 1)
    assert not j.needs_compacting()  # 7 lines: 2 x 1 live + 5 of slack
    j.append([rec], 1)
    assert j.needs_compacting()
    j.compact({"a": rec})
    assert not j.needs_compacting()
    assert len(path.read_text().splitlines()) == 1
    j.append([CommandRecord(task_id="b")], 2)  # appends go on after a compaction
    j.close()
    assert sorted(journal(path).load()) == ["a", "b"]


def test_an_older_agents_commands_json_is_moved_into_the_journal_once(tmp_path: Path) -> None:
    legacy = StateFile(tmp_path / "commands.json", CommandRecord, section="commands")
    legacy.save({"old": CommandRecord(task_id="old", status="succeeded", acked=True)})

    loaded = journal(tmp_path / "commands.jsonl", legacy).load()
    assert loaded["old"].status == "succeeded" and loaded["old"].acked
    assert not (tmp_path / "commands.json").exists()
    assert list(journal(tmp_path / "commands.jsonl", legacy).load()) == ["old"]


def test_sync_waits_for_its_interval_unless_forced(tmp_path: Path) -> None:
    j = journal(tmp_path / "commands.jsonl")
    j.append([CommandRecord(task_id="a")], 1)
    assert j.unsynced
    j.sync()  # within JOURNAL_SYNC_SECONDS of the journal's start: not yet
    assert j.unsynced
    j.sync(force=True)
    assert not j.unsynced
