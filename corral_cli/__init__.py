"""``corral``: the command-line client of the manager's REST API."""
