"""The ``manager`` command: a small supervisor of the private Redis, gunicorn and the duties."""
