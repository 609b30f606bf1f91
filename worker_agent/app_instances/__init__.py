"""Long-running app instances on this node (document 003 §5.2): started, health-checked, restarted with backoff,
stopped on request, and adopted again by a restarted agent."""
