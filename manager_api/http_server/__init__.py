"""The manager's gunicorn worker and the request framing it reads with."""
