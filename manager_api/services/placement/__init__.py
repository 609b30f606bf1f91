"""Placement: which node each piece of work goes to, and why not the others."""
