"""The duties: the one background loop of the manager and the reading of the agents' reports."""
