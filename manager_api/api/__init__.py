"""The HTTP layer: blueprints, request schemas, the one error handler; the only part that knows HTTP."""
