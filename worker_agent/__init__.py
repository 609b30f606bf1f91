"""The corral agent: joins the manager, works its node's RQ queue, supervises task processes."""

from .lazy_imports import defer_unused

# Before anything imports redis: what the agent's libraries import and the agent never uses waits for a use.
defer_unused()
