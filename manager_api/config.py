"""Settings of the manager, built by the `manager` launcher and handed to gunicorn workers as CORRAL_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from shared import defaults

ENV_PREFIX = "CORRAL_"
"""Every setting travels as CORRAL_<FIELD NAME IN CAPITALS>."""


@dataclass(frozen=True)
class Settings:
    """Everything the API process and the duties need to know."""

    db_path: str = defaults.DB_PATH
    redis_url: str | None = None
    agent_redis_url: str | None = None
    private_redis: bool = False  # redis_url is the manager's own redis-server: derive the agents' URL
    redis_ca_bundle: str | None = None  # PEM CA bundle a rediss:// redis_url is verified against (None: system's)
    api_token: str | None = None
    join_token_file: str | None = None
    sftp_host: str | None = None
    offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS
    stop_grace_seconds: float = defaults.STOP_GRACE_SECONDS
    task_retention_days: int = 30  # ended fleet tasks older than this are deleted by the duties
    task_deadline_slack_seconds: float = defaults.DEADLINE_SLACK_SECONDS
    component_stop_grace_seconds: float = defaults.COMPONENT_STOP_GRACE_SECONDS  # unless a component says
    component_metrics_retention_hours: float = defaults.COMPONENT_METRICS_RETENTION_HOURS
    component_metrics_every_seconds: float = 10.0  # at most one usage sample stored per component this often
    node_metrics_every_seconds: float = 60.0  # one CPU/memory sample per online node this often (0: none)
    node_metrics_retention_hours: float = 24.0
    component_resend_seconds: float = 30.0  # a deploy or stop unanswered this long is sent again
    alert_urls: str | None = None  # webhook URLs, space or comma separated (services.alerts)
    alert_secret_file: str | None = None  # the HMAC secret's file: only the duties read it, no worker holds it
    alert_max_attempts: int = 10  # deliveries of one alert to one URL before it is given up
    processor_max_attempts: int = 10  # attempts at one processor delivery before it is given up
    # Rate and size limits (manager_api/api/rate_limits.py, manager_api/body_limits.py); "off" disables a rate limit.
    rate_limit: str = defaults.RATE_LIMIT
    join_rate_limit: str = defaults.JOIN_RATE_LIMIT
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    log_level: str = "INFO"
    secrets_key_file: str | None = None  # services.secret_store; else secrets.key beside the database/join token

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from CORRAL_* variables (unset ones keep their defaults)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            default = f.default
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[f.name] = int(raw)
            elif isinstance(default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The CORRAL_* variables that make from_env() rebuild these settings."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "1" if value else "0"
            out[ENV_PREFIX + f.name.upper()] = str(value)
        return out
