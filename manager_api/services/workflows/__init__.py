"""Workflows (issue 17): graph.py checks the steps, actions.py records and cancels, advance.py runs them."""
