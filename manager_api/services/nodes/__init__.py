"""Nodes: joining, liveness, inventory, labels, their Redis users, forgetting them."""
