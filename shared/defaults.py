"""Default values shared by the manager and the agents; each has a one-line reason."""

from __future__ import annotations

PROTOCOL_VERSION = 2
"""Version of the manager/agent protocol (join body, job payloads, events); bumped on breaking change (2: every
key an agent writes is its node's, reports in one stream per node, node ids [A-Za-z0-9-], job ids <node>_...)."""

MANAGER_PORT = 8080
"""HTTP port of the manager's REST API (manual §4.2)."""

MANAGER_HOST = "127.0.0.1"
"""The manager binds loopback unless told otherwise: safe by default."""

MANAGER_URL = "http://localhost:8080"
"""Where an agent looks for its manager when no --manager-url is given (manual §4.2)."""

DB_PATH = "resource_monitor.db"
"""The one file that holds templates, nodes and deployments (manual §3.2, §5.5)."""

AGENT_PORT = 8081
"""The agent's local health endpoint (manual §4.2); it serves nothing else."""

HEARTBEAT_INTERVAL = 5.0
"""Seconds between two heartbeats of an agent (manual §4.2 --interval)."""

OFFLINE_AFTER_INTERVALS = 3
"""A node whose heartbeat is older than this many of its intervals reads offline."""

STOP_GRACE_SECONDS = 5.0
"""Seconds between SIGTERM and SIGKILL when a task's process group is stopped."""

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body the API accepts by default (manager --max-body-bytes); larger ones get 413."""

SCRIPT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest body of POST /api/scripts (when --max-body-bytes is smaller): a script of SCRIPT_MAX_BYTES, base64."""

SCRIPT_MAX_BYTES = 4 * 1024 * 1024
"""Largest script content (a body or a zip) the manager registers; every node may fetch it once (by digest)."""

SCRIPT_MAX_EXTRACTED_BYTES = 64 * 1024 * 1024
"""Largest sum of the sizes of a script archive's files: a small zip must not fill an agent's disk (a zip bomb)."""

SCRIPT_CACHE_KEEP_SECONDS = 30 * 24 * 3600.0
"""An agent removes a cached script (by digest) that no run used for this long; a later run fetches it again."""

JOIN_MAX_BODY_BYTES = 64 * 1024
"""Largest body of an agent's join (a real one is under 2 KiB): the one route a join token alone reaches."""

RATE_LIMIT = "500/second"
"""Requests each bearer token (else each client address) may make on the API (manager --rate-limit)."""

JOIN_RATE_LIMIT = "100/second"
"""Joins each client address may make (manager --join-rate-limit): paces a fleet behind one NAT, refuses none."""

EVENTS_MAXLEN = 100_000
"""Approximate cap of the agent event stream; the manager consumes it long before."""

JOB_RESULT_TTL = 300
"""Seconds RQ keeps a finished job's result; the truth lives in the manager's database."""

JOB_FAILURE_TTL = 7 * 24 * 3600
"""Seconds RQ keeps a failed job for inspection (rq-dashboard)."""

TASK_TIMEOUT = 300
"""Seconds a fleet task's command may run on a node when the request names no timeout."""

TASK_TIMEOUT_MAX = 7 * 24 * 3600
"""Largest timeout a fleet task may ask for."""

OUTPUT_CAP_BYTES = 1024 * 1024
"""Stdout (and, apart, stderr) kept per node of a fleet task; more is dropped and flagged truncated."""

OUTPUT_STREAM_TTL = 24 * 3600
"""Seconds a fleet task's live output stream is kept in Redis after its last line."""

DEADLINE_SLACK_SECONDS = 5.0
"""Past timeout + this, the manager ends a node that never answered as failed, whatever the agent says."""

COMPONENT_STOP_GRACE_SECONDS = 10.0
"""Seconds a component gets between SIGTERM (or docker stop) and SIGKILL when it is stopped."""

COMPONENT_METRICS_RETENTION_HOURS = 24.0
"""How long the manager keeps a component's resource usage history (component_metrics)."""

IMAGE_DOWNLOAD_TIMEOUT = 600.0
"""Seconds an agent may spend fetching one component image before the component reads failed."""

APP_BACKOFF_SECONDS = 1.0
"""First delay before an app instance that exited (or failed its checks) is started again (Marathon's)."""

APP_BACKOFF_FACTOR = 1.15
"""Each further restart in a row waits this many times longer (Marathon's)."""

APP_MAX_BACKOFF_SECONDS = 300.0
"""Longest delay between two restarts of an app instance (Marathon's maxLaunchDelaySeconds)."""

APP_STABLE_SECONDS = 60.0
"""An instance that ran (and passed its checks) this long starts its next restart from the first delay again."""

APP_KILL_SIGNAL = 15
"""Signal sent to an app instance's process group to stop it (document 003 §5.2.1 killSignal)."""

APP_STOP_GRACE_SECONDS = 10.0
"""Seconds between killSignal and SIGKILL when an app instance is stopped."""

APP_PORT_RANGE = (20000, 32767)
"""Where an agent picks the ports asked as 0: below Linux's default ephemeral range (32768-60999), so that
no outgoing connection holds a port an instance is given; an agent narrows it away from its node's
ip_local_port_range when that differs."""

APP_LOG_FILE_BYTES = 10 * 1024 * 1024
"""An instance's stdout (and, apart, stderr) file on its node is rotated past this size."""

APP_LOG_FILES_KEPT = 3
"""Rotated log files kept per stream of an instance (stdout.log.1 .. .3)."""

APP_LOG_STREAM_MAXLEN = 10_000
"""Approximate number of lines of an instance's log kept in Redis for GET .../logs (newest kept)."""

APP_REPORT_INTERVAL = 5.0
"""Seconds between two reports of a running instance when nothing changes (so the manager learns of copies
it no longer wants, and a report lost in a Redis failover is made good)."""
