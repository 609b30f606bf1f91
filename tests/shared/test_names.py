"""Every Redis key prefix and job name is spelled once, in shared/ (house style: one home per name)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from shared import jobs

ROOT = Path(__file__).resolve().parents[2]


def test_no_package_spells_a_corral_key_outside_shared() -> None:
    offenders = []
    for package in ("manager_api", "worker_agent", "corral_cli"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            if re.search(r"""["']corral[:.](node|nodes|events|lock|task|command)""", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_every_allowed_job_names_a_real_function_of_the_agent() -> None:
    for name in jobs.ALLOWED:
        module, _, attr = name.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr))


def test_manager_never_imports_the_agent_and_back() -> None:
    pairs = [
        ("manager_api", "worker_agent"),
        ("worker_agent", "manager_api"),
        ("shared", "manager_api"),
        ("shared", "worker_agent"),
        ("corral_cli", "manager_api"),
        ("corral_cli", "worker_agent"),
    ]
    for package, other in pairs:
        for path in (ROOT / package).rglob("*.py"):
            assert not re.search(rf"^\s*(from|import)\s+{other}\b", path.read_text(), re.M), path
