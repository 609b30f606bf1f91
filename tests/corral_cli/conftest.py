"""The `stack` fixture: a real manager and agent per test module that runs `corral` against them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.corral_cli.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One manager and one agent (`cli-a`) for all the tests of a module."""
    with running_stack(tmp_path_factory.mktemp("cli")) as started:
        yield started
