"""The corral agent: joins the manager, works its node's RQ queue, supervises task processes."""
