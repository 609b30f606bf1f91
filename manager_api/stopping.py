"""Whether this manager process has been told to stop.

The gunicorn worker sets STOPPING on SIGTERM (http_server/worker.py); whatever holds a thread for long (the
API's output and log follows, the console's live streams) ends at once when it is set, so a stop never waits
out gunicorn's graceful timeout for them. A client that still wants more reconnects to the next manager.
"""

from __future__ import annotations

import threading

STOPPING = threading.Event()
