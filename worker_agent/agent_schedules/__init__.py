"""Agent-side (on_agent) schedules: the set this node holds (schedule_set) and their firing (firing)."""
