"""How large a request body may be, by path: the one rule both the server's reader (http_server.framing, which
refuses before a body is read) and the app's reader (api.request_json, behind any server) apply.

Every route takes up to ``--max-body-bytes`` (1 MiB by default); the agent join, which a join token alone
reaches and whose real bodies are under 2 KiB, takes at most JOIN_MAX_BODY_BYTES, so a holder of the join
token cannot make every worker buffer a megabyte per connection. The registration of a script (POST
/api/scripts, issue 17) takes at least SCRIPT_MAX_BODY_BYTES: a script of up to SCRIPT_MAX_BYTES, in base64.
"""

from __future__ import annotations

from shared.api import JOIN_PATH
from shared.defaults import JOIN_MAX_BODY_BYTES, SCRIPT_MAX_BODY_BYTES

SCRIPTS_PATH = "/api/scripts"

_JOIN_TARGET = JOIN_PATH.encode()
_SCRIPTS_TARGET = SCRIPTS_PATH.encode()


def body_limit(path: str, max_body_bytes: int) -> int:
    """Largest body accepted on ``path`` (the path alone, no query) when routes take ``max_body_bytes``."""
    if path == JOIN_PATH:
        return min(JOIN_MAX_BODY_BYTES, max_body_bytes)
    if path == SCRIPTS_PATH:
        return max(SCRIPT_MAX_BODY_BYTES, max_body_bytes)
    return max_body_bytes


def target_limit(target: bytes, max_body_bytes: int) -> int:
    """body_limit for a request target as it stands in a request line (``/api/agent/join?x=1``)."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    named = {_JOIN_TARGET: JOIN_PATH, _SCRIPTS_TARGET: SCRIPTS_PATH}.get(path, "")
    return body_limit(named, max_body_bytes)
