"""Long-running apps (document 003 §5.2): definitions, instances placed on nodes, kept at their count."""
