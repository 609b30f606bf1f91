"""worker_agent.lazy_imports: the agent does not load redis.asyncio, and whoever uses it gets the real module."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import worker_agent.cli, worker_agent.jobs
assert "redis.asyncio.client" not in sys.modules, "redis.asyncio was loaded by the agent's imports"
import redis
import redis.asyncio
from redis.asyncio import Redis
assert Redis is redis.asyncio.Redis is sys.modules["redis.asyncio.client"].Redis
from redis.asyncio.client import Pipeline
assert Pipeline.__module__ == "redis.asyncio.client"
try:
    redis.asyncio.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError("a missing attribute must raise AttributeError")
print("ok")
"""


def test_agent_imports_leave_redis_asyncio_unloaded_until_used() -> None:
    # A fresh interpreter: the test process may have imported redis before worker_agent.
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_defer_does_nothing_once_the_package_is_imported() -> None:
    import redis  # noqa: F401  (imported: too late to defer)

    from worker_agent import lazy_imports

    assert lazy_imports.defer("redis", "asyncio") is False


MARSHMALLOW_CHECK = """
import re, sys
compile_before = re.compile
import worker_agent.cli, worker_agent.jobs
assert re.compile is compile_before, "re.compile was left swapped"
import marshmallow.validate as validate
from worker_agent.lazy_imports import LazyPattern
for name in ("USER_REGEX", "DOMAIN_REGEX"):
    pattern = getattr(validate.Email, name)
    assert isinstance(pattern, LazyPattern), type(pattern)
    assert pattern._compiled is None, f"Email.{name} was compiled by the agent's imports"
email = validate.Email()
assert email("someone@example.com") == "someone@example.com"
for bad in ("no-at-sign", "a@-bad-.example", "two@@example.com"):
    try:
        email(bad)
    except validate.ValidationError:
        pass
    else:
        raise AssertionError(f"{bad!r} passed the Email validator")
assert isinstance(validate.Email.DOMAIN_REGEX._compiled, re.Pattern)
assert validate.Email.DOMAIN_REGEX.pattern.startswith("(?:[A-Z0-9")
assert isinstance(validate.Regexp(r"^a+$").regex, re.Pattern), "other validators compile as usual"
print("ok")
"""


def test_agent_imports_marshmallow_without_compiling_the_email_validator() -> None:
    out = subprocess.run([sys.executable, "-c", MARSHMALLOW_CHECK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_marshmallow_does_nothing_once_marshmallow_is_imported() -> None:
    import marshmallow  # noqa: F401  (imported: too late)

    from worker_agent import lazy_imports

    assert lazy_imports.import_marshmallow() is False
