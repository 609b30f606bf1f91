"""The manager's gunicorn worker and the request framing it reads with."""

from __future__ import annotations

import threading

DRAINING = threading.Event()
"""Set in a worker process when it has been told to stop (SIGTERM): answers that would hold a thread for long
(the console's live streams) end at once instead of making the stop wait out gunicorn's graceful timeout."""
