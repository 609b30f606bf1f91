"""Marshmallow schemas of the public API's requests: strict, trimmed, bounded."""
