"""What the app factory attaches to the Flask app and services fetch back: settings and Redis."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app
from redis import Redis

from manager_api.config import Settings
from shared import tls

EXTENSION_KEY = "corral"


@dataclass
class AppState:
    """The manager's resources inside one Flask app."""

    settings: Settings
    redis: Redis


def init_app(app: Flask, state: AppState) -> None:
    """Attach ``state`` to ``app``."""
    app.extensions[EXTENSION_KEY] = state


def state() -> AppState:
    """The AppState of the current app."""
    result: AppState = current_app.extensions[EXTENSION_KEY]
    return result


def settings() -> Settings:
    """Settings of the current app."""
    return state().settings


def redis() -> Redis:
    """The Redis client of the current app."""
    return state().redis


def connect_redis(url: str, ca_bundle: str | None = None) -> Redis:
    """A Redis client with timeouts, so a dead Redis fails a request instead of hanging it; a rediss:// one
    verifies the server against ``ca_bundle``."""
    return tls.redis_from_url(url, ca_bundle, socket_timeout=5, socket_connect_timeout=3, health_check_interval=30)
