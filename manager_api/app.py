"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask

from manager_api import console, db, extensions
from manager_api.api import auth, errors, rate_limits, request_json, routes
from manager_api.api.json_provider import OrjsonProvider
from manager_api.config import Settings
from manager_api.observability import requests as request_metrics
from manager_api.services import secret_store
from manager_api.services.alerts import delivery as alert_delivery
from manager_api.services.alerts import events as alert_events

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """A manager API app on ``settings`` (default: from CORRAL_* variables)."""
    settings = settings or Settings.from_env()
    if not settings.redis_url:
        raise RuntimeError("no Redis configured: set CORRAL_REDIS_URL or pass Settings(redis_url=...)")
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    # First of the before-request hooks: a body over the limit is refused before anything looks at the request.
    request_json.init_app(app, settings.max_body_bytes)
    request_metrics.init_app(app)
    db.init_db(settings.db_path)
    alert_events.configure(alert_delivery.parse_urls(settings.alert_urls))
    secret_store.configure(secret_store.key_file_of(settings))
    extensions.init_app(
        app, extensions.AppState(settings, extensions.connect_redis(settings.redis_url, settings.redis_ca_bundle))
    )
    errors.register(app)
    auth.init_app(app)
    app.before_request(db.connect)
    app.teardown_appcontext(lambda _exc: db.release())
    routes.register(app)
    console.register(app)
    rate_limits.init_app(app, settings)  # after auth: counts requests it let through
    logger.debug("manager app ready on database %s", settings.db_path)
    return app


def close_app(app: Flask) -> None:
    """Close the Redis connections ``app`` holds: its own client's and its rate limiter's (a client of its own).
    For whoever makes apps and outlives them (the tests); a gunicorn worker's app lasts as long as its process."""
    app.extensions[extensions.EXTENSION_KEY].redis.close()
    rate_limits.close(app)
