"""Entry point of gunicorn workers: ``gunicorn manager_api.wsgi:app``."""

from __future__ import annotations

import logging
import os

from .app import create_app

if not logging.getLogger().handlers:
    # A worker is its own process: configure its logging once, like the launcher's.
    logging.basicConfig(
        level=os.environ.get("CORRAL_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )

app = create_app()
