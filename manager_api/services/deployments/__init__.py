"""The manual's templates and deployments, and the agents' task events that drive them."""
