"""Entry point of gunicorn workers: ``gunicorn manager_api.wsgi:app``."""

from __future__ import annotations

import gc
import logging
import os

from manager_api.app import create_app

if not logging.getLogger().handlers:
    # A worker is its own process: configure its logging once, like the launcher's.
    logging.basicConfig(
        level=os.environ.get("CORRAL_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )

app = create_app()
# What the worker holds once started (Flask, peewee, redis, the app) lives as long as it does: out of the
# collector's sight, a full collection during a request scans only what requests made. It was a third of the
# p99 of a cold 1,000-node placement (bench/bench_placement.py: ~30 ms of collection -> ~4 ms).
gc.freeze()
