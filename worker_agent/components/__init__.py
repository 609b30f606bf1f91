"""Business components on the agent: the component manager and its drivers (process, docker)."""
