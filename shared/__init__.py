"""Names, states and wire formats that the manager and the agents share.

Depends only on the standard library, redis-py and marshmallow; never on manager_api or worker_agent.
"""
