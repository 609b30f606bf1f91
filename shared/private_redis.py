"""Where a manager keeps its private Redis's port and password (under its data directory), read by the manager
that starts it and by `corral dashboard`, which finds that Redis from the data directory alone."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

DIR_NAME = "corral-redis"
"""Directory under the data dir holding the AOF, the password and the port."""

PASSWORD_FILE = "password"
PORT_FILE = "port"
CONF_FILE = "redis.conf"


def url(password: str, port: int, tls: bool = False) -> str:
    """The URL of a private Redis on this host (rediss:// when it is TLS-only)."""
    return f"{'rediss' if tls else 'redis'}://:{password}@127.0.0.1:{port}/0"


def recorded_url(data_dir: str | Path) -> str:
    """The URL of the private Redis of the manager whose data directory is ``data_dir``, from the port and
    password it keeps there (raises OSError or ValueError when there are none: that manager never started one).

    A TLS-only one (the manager's --tls-cert) gives a ``rediss://`` URL whose ``ssl_ca_certs`` query names the CA
    of its redis.conf: redis-py (and so rq-dashboard) takes a query argument it does not know as a keyword."""
    redis_dir = Path(data_dir) / DIR_NAME
    password = (redis_dir / PASSWORD_FILE).read_text().strip()
    port = int((redis_dir / PORT_FILE).read_text().strip())
    if not password:
        raise ValueError(f"{redis_dir / PASSWORD_FILE} is empty")
    ca = _tls_ca(redis_dir / CONF_FILE)
    if ca is None:
        return url(password, port)
    return url(password, port, tls=True) + "?" + urlencode({"ssl_ca_certs": ca, "ssl_cert_reqs": "required"})


def _tls_ca(conf: Path) -> str | None:
    """The CA file of a TLS-only private Redis's configuration; None for a plain one (or no configuration)."""
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(" ")
        if name == "tls-ca-cert-file":
            return value.strip().strip('"')
    return None
