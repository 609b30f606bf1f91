"""Where the CLI finds the manager URL and API token: flag, then environment, then the config file."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
"""The manager `ops/dev up` and a default `manager` serve."""

URL_ENV = "CORRAL_URL"
"""Environment variable holding the manager URL."""

TOKEN_ENV = "CORRAL_API_TOKEN"
"""Environment variable holding the API token (the same one `manager` reads)."""

CONFIG_ENV = "CORRAL_CONFIG"
"""Environment variable naming another config file (tests, several fleets)."""


class ConfigError(Exception):
    """The config file exists but cannot be used."""


@dataclass(frozen=True)
class Settings:
    """The resolved connection settings; ``repr`` hides the token so it never reaches a log or a traceback."""

    url: str
    token: str | None
    ca_bundle: str | None = None
    """PEM CA bundle an https:// manager's certificate is verified against; None: the system's CAs."""

    def __repr__(self) -> str:
        return f"Settings(url={self.url!r}, token={'set' if self.token else None})"


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/corral/config.toml``, i.e. ``~/.config/corral/config.toml`` by default."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.toml"


def load_config_file(path: Path) -> dict[str, Any]:
    """The ``url`` and ``token`` keys of a TOML file; an absent file is an empty config."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    for key in ("url", "token", "ca-bundle"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: {key} must be a string")
    return data


def resolve(
    url: str | None, token: str | None, config_path: Path | None = None, ca_bundle: str | None = None
) -> Settings:
    """Settings from the flags (click already folded the environment in), else the file, else defaults."""
    file_values: dict[str, Any] = {}
    if not url or not token or not ca_bundle:
        file_values = load_config_file(config_path or default_config_path())
    final_url = (url or file_values.get("url") or DEFAULT_URL).strip().rstrip("/")
    if not final_url.startswith(("http://", "https://")):
        raise ConfigError(f"manager URL must start with http:// or https://, got {final_url!r}")
    final_token = (token or file_values.get("token") or "").strip() or None
    final_ca = (ca_bundle or file_values.get("ca-bundle") or "").strip() or None
    return Settings(url=final_url, token=final_token, ca_bundle=final_ca)
