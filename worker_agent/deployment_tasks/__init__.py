"""Deployment tasks: the supervisor that runs, watches, stops and adopts the task processes of a node."""
