"""The corral manager: REST API (Flask under gunicorn), SQLite store, background duties."""
