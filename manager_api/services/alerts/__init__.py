"""Webhook alerts: events recorded with the change that raises them (events), POSTed by the duties (delivery)."""
