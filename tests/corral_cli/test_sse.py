"""The SSE parser against the event-stream format's rules and the manager's own output."""

from __future__ import annotations

import json

from corral_cli.sse import SseEvent, parse_sse


def test_named_events_with_ids_as_the_manager_sends_them() -> None:
    data = json.dumps({"node_id": "n1", "hostname": "web-1", "stream": "stdout", "line": "hi"})
    raw = f'id: 1-0\nevent: line\ndata: {data}\n\nevent: end\ndata: {{"status": "completed"}}\n\n'
    events = list(parse_sse(raw.encode().splitlines(keepends=True)))
    assert events == [SseEvent("line", data, "1-0"), SseEvent("end", '{"status": "completed"}', "1-0")]


def test_comments_and_keepalives_are_skipped() -> None:
    events = list(parse_sse([b": keepalive\n", b"\n", b"data: x\n", b"\n"]))
    assert events == [SseEvent("message", "x")]


def test_multiline_data_joined_and_crlf_handled() -> None:
    events = list(parse_sse(["data: one\r\n", "data:two\r\n", "\r\n"]))
    assert events == [SseEvent("message", "one\ntwo")]


def test_only_one_leading_space_is_stripped_and_colons_in_values_kept() -> None:
    events = list(parse_sse(["event: line\n", "data:   a: b\n", "\n"]))
    assert events == [SseEvent("line", "  a: b")]


def test_event_type_resets_after_dispatch_and_empty_data_is_not_dispatched() -> None:
    events = list(parse_sse(["event: end\n", "\n", "data: y\n", "\n"]))
    assert events == [SseEvent("message", "y")]


def test_an_event_cut_before_its_blank_line_is_dropped() -> None:
    assert list(parse_sse(["event: line\n", "data: partial\n"])) == []


def test_events_are_yielded_as_soon_as_complete() -> None:
    fed: list[str] = []

    def lines():  # type: ignore[no-untyped-def]
        for line in ["data: 1\n", "\n", "data: 2\n", "\n"]:
            fed.append(line)
            yield line

    stream = parse_sse(lines())
    assert next(stream).data == "1"
    assert len(fed) == 2  # the second event has not been read yet


def test_invalid_utf8_does_not_break_the_stream() -> None:
    events = list(parse_sse([b"data: \xff ok\n", b"\n"]))
    assert events[0].data.endswith(" ok")
