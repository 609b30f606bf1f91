"""One module per resource of the console, each with its blueprint ``bp`` (registered under ``console``)."""

from __future__ import annotations

from manager_api.console.pages import (
    apps,
    audit,
    auth,
    businesses,
    manual,
    nodes,
    overview,
    schedules,
    scripts,
    tasks,
    tokens,
    workflows,
)

ALL_PAGES = (auth, overview, nodes, apps, businesses, manual, tasks, scripts, workflows, schedules, audit, tokens)
