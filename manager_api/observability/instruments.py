"""What the manager observes as it happens: requests, dispatches, fleet task ends (counters and histograms).

Every instrument here has labels, so that none holds a value before the launcher turned multiprocess mode on
(observability.multiprocess.prepare): a labelled metric makes its values at ``.labels()``, not at import.
What lives in the database or Redis (nodes, tasks by state, queues) is read at scrape time instead
(observability.collectors), so it is right whichever process changed it and after any restart.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PREFIX = "corral_"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: an API answer or a dispatch, from a few milliseconds to a request's read timeout."""

TASK_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 86400.0)
"""Seconds: a fleet task, from an ``echo`` to a day-long timeout."""

http_requests = Counter(
    PREFIX + "http_requests",
    "HTTP requests answered by the manager, by route (its URL rule), method and status code",
    ["route", "method", "code"],
)
http_request_duration = Histogram(
    PREFIX + "http_request_duration_seconds",
    "Time from a request's arrival in Flask to its answer (to the first byte for a stream), by route and method",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
dispatch_duration = Histogram(
    PREFIX + "dispatch_seconds",
    "Time to put one batch of jobs on the nodes' queues (one Redis pipeline), by job",
    ["job"],
    buckets=LATENCY_BUCKETS,
)
fleet_task_duration = Histogram(
    PREFIX + "fleet_task_duration_seconds",
    "Time from a fleet task's start to its end, by the status it ended in",
    ["status"],
    buckets=TASK_DURATION_BUCKETS,
)
