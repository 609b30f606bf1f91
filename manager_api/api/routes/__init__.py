"""One blueprint per resource; routes parse, call a service, serialize."""

from __future__ import annotations

from flask import Flask

from manager_api.api.routes import (
    agents,
    apps,
    audit,
    businesses,
    deployments,
    docs,
    health,
    metrics,
    nodes,
    schedules,
    scripts,
    tasks,
    templates,
    tokens,
    workflows,
)


def register(app: Flask) -> None:
    """Register every blueprint on ``app``."""
    for module in (
        health,
        metrics,
        nodes,
        templates,
        deployments,
        agents,
        audit,
        tasks,
        schedules,
        scripts,
        businesses,
        apps,
        tokens,
        workflows,
        docs,
    ):
        app.register_blueprint(module.bp)
