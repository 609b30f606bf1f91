"""RequestFraming: when a buffered request is whole, needs more bytes, or is to be answered as it is."""

from __future__ import annotations

from functools import partial

import pytest

from manager_api.body_limits import target_limit
from manager_api.http_server.framing import PARSER_READ_AHEAD, RequestFraming, Verdict
from shared.defaults import JOIN_MAX_BODY_BYTES

LIMIT = 100


def framing() -> RequestFraming:
    return RequestFraming(body_limit=LIMIT, head_limit=1000, chunk_line_limit=20)


def fed_bytewise(data: bytes) -> list[Verdict]:
    """The verdict after each byte, as from a client that sends one byte at a time."""
    reader = framing()
    return [reader.feed(data[i : i + 1]) for i in range(len(data))]


def whole_only_at_the_end(data: bytes) -> bool:
    verdicts = fed_bytewise(data)
    return verdicts[-1] is Verdict.WHOLE and set(verdicts[:-1]) == {Verdict.WAIT}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",  # empty lines before the request line
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\ncontent-length:  0 \r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer: yes\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_a_request_is_whole_only_once_its_last_byte_is_read(request_bytes: bytes) -> None:
    assert whole_only_at_the_end(request_bytes)


def test_a_request_read_at_once_is_whole_and_keeps_what_follows() -> None:
    reader = framing()
    pipelined = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    assert reader.feed(pipelined) is Verdict.WHOLE
    assert bytes(reader.buffer) == pipelined  # the next request goes to the parser too


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /a HTTP/1.1\r\nContent-Length: 101\r\n\r\n",  # over the limit: answered 413 unread
        b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 21,  # a chunk-size line too long
        b"GET /" + b"a" * 996,  # a head past the limit (1,001 bytes)
    ],
)
def test_a_request_to_refuse_is_handed_over_as_soon_as_that_is_known(request_bytes: bytes) -> None:
    verdicts = fed_bytewise(request_bytes)
    assert verdicts[-1] is Verdict.HAND_OVER
    assert set(verdicts[:-1]) <= {Verdict.WAIT}


def test_a_chunked_body_over_the_limit_is_handed_over_once_all_that_is_read_of_it_is_buffered() -> None:
    reader = framing()
    assert reader.feed(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"x" * LIMIT) is Verdict.WAIT
    assert reader.feed(b"\r\n%x\r\n" % (PARSER_READ_AHEAD + 10)) is Verdict.WAIT  # 100 bytes: at the limit
    # The manager reads limit + 1 bytes, gunicorn up to PARSER_READ_AHEAD more: those must be buffered.
    assert reader.feed(b"x" * PARSER_READ_AHEAD) is Verdict.WAIT
    assert reader.feed(b"x") is Verdict.HAND_OVER


def test_a_body_within_the_limit_is_waited_for() -> None:
    reader = framing()
    assert reader.feed(b"POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 99) is Verdict.WAIT
    assert reader.feed(b"x") is Verdict.WHOLE


@pytest.mark.parametrize(
    ("head", "wants"),
    [
        (b"POST /a HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", True),
        (b"POST /a HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", False),  # HTTP/1.0 ignores it
        (b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", False),  # no body to wait for
    ],
)
def test_a_client_waiting_for_100_continue_is_recognised(head: bytes, wants: bool) -> None:
    reader = framing()
    reader.feed(head)
    assert reader.wants_continue is wants


def test_the_join_is_held_to_its_own_smaller_limit_before_its_body_is_read() -> None:
    def reader() -> RequestFraming:
        return RequestFraming(1024 * 1024, 1000, 20, partial(target_limit, max_body_bytes=1024 * 1024))

    over = JOIN_MAX_BODY_BYTES + 1
    # The head alone decides: a Content-Length over the join's cap is answered (413) without reading the body.
    for target in (b"/api/agent/join", b"/api/agent/join?x=1"):
        assert reader().feed(b"POST " + target + b" HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % over) is Verdict.HAND_OVER
    assert reader().feed(b"POST /api/tasks HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % over) is Verdict.WAIT
    # Chunked: once the bytes past the cap (and the parser's read-ahead) are there.
    join = reader()
    head = b"POST /api/agent/join HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n" % (over + PARSER_READ_AHEAD) + b" " * (over + PARSER_READ_AHEAD)
    assert join.feed(head + chunk) is Verdict.HAND_OVER
    other = reader()
    assert other.feed(head.replace(b"/api/agent/join", b"/api/tasks") + chunk) is Verdict.WAIT
