"""One module per resource of the console, each with its blueprint ``bp`` (registered under ``console``)."""

from __future__ import annotations

from manager_api.console.pages import audit, auth, businesses, manual, nodes, overview, schedules, tasks

ALL_PAGES = (auth, overview, nodes, businesses, manual, tasks, schedules, audit)
