"""Modules the agent's libraries import but the agent never uses, loaded only if something uses them.

``import redis`` imports ``redis.asyncio`` (its client, connection, cluster, lock, sentinel modules): about 3 %
of an agent's start-up CPU (5 ms) and 0.7 MB of every agent's memory, for an API the agent never calls, and fifty
agents starting at once on two cores wait for each other's imports. (asyncio itself stays: redis's sync parsers
import names from it.) So, before redis is imported, ``redis.asyncio`` is put in ``sys.modules`` as an empty
module of its real spec whose module ``__getattr__`` (PEP 562) runs the real module into it at the first
attribute asked for: ``from redis import asyncio`` binds it as usual, and any real use gets the real module.

importlib.util.LazyLoader does not do here: Python 3.11's import reads the lazy module's ``__spec__`` when
``redis/__init__.py`` imports it, and that read loads it.

marshmallow, which the agent does use, compiles the two regular expressions of its ``Email`` validator in the
class body of ``marshmallow.validate`` (every 4.x release), one of them a character class over most of Unicode
compiled case-insensitively: about a quarter of an agent's start-up CPU, for a validator no corral schema uses.
``import_marshmallow`` imports marshmallow with those two patterns compiled at their first use instead
(``LazyPattern``); marshmallow and its other validators are the real ones.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import sys
import threading
from typing import Any

DEFERRED = (("redis", "asyncio"),)
"""(package, submodule) pairs the agent defers."""

_loading = threading.RLock()


def defer(package: str, name: str) -> bool:
    """Make ``package.name`` load at its first attribute access; False (and nothing done) when it is too late
    (the package is already imported) or the module is not found."""
    full = f"{package}.{name}"
    if package in sys.modules or full in sys.modules:
        return False
    parent = importlib.util.find_spec(package)
    if parent is None or parent.submodule_search_locations is None:
        return False
    spec = importlib.machinery.PathFinder.find_spec(full, list(parent.submodule_search_locations))
    if spec is None or spec.loader is None:
        return False
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)

    def load_on_first_use(attr: str) -> Any:
        with _loading:
            if module.__dict__.get("__getattr__") is load_on_first_use:
                try:
                    loader.exec_module(module)  # the real module, into this one: whoever bound it has it
                finally:
                    if module.__dict__.get("__getattr__") is load_on_first_use:
                        del module.__dict__["__getattr__"]
        try:
            return module.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {full!r} has no attribute {attr!r}") from None

    module.__dict__["__getattr__"] = load_on_first_use
    sys.modules[full] = module
    return True


LAZY_PATTERNS_OF = ("marshmallow.validate", "Email")
"""(module, class body) whose compiled patterns import_marshmallow leaves to their first use."""


class LazyPattern:
    """Stands for ``re.compile(pattern, flags)``: compiled at the first attribute asked for (``match``...)."""

    def __init__(self, pattern: str, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and not hasattr(re.Pattern, attr):
            # Not a pattern's: asked by Python's machinery (ABCMeta asks every class attribute whether it is
            # __isabstractmethod__), which must not compile the pattern.
            raise AttributeError(attr)
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(*self._args)
        return getattr(compiled, attr)


def import_marshmallow() -> bool:
    """Import marshmallow with the patterns of LAZY_PATTERNS_OF compiled at their first use; False (and nothing
    done) when marshmallow is already imported. ``re.compile`` is swapped only while marshmallow's modules run,
    and only a call from that class body gets a LazyPattern: any other caller (another thread too) gets re's."""
    if "marshmallow.validate" in sys.modules or "marshmallow" in sys.modules:
        return False
    real_compile = re.compile
    module, owner = LAZY_PATTERNS_OF

    def compile_lazily(pattern: Any, flags: Any = 0) -> Any:
        caller = sys._getframe(1)
        if caller.f_code.co_name == owner and caller.f_globals.get("__name__") == module:
            return LazyPattern(pattern, flags)
        return real_compile(pattern, flags)

    re.compile = compile_lazily
    try:
        importlib.import_module("marshmallow")
    finally:
        re.compile = real_compile
    return True


def defer_unused() -> None:
    """Defer every module of DEFERRED, and import marshmallow without compiling what it never uses."""
    for package, name in DEFERRED:
        defer(package, name)
    import_marshmallow()
