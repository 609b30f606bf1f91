"""Validators of what a component or an app instance carries onto its node's disk: ids that become file and
directory names, and the paths of config files (shared.config_paths)."""

from __future__ import annotations

from marshmallow import ValidationError

from ..config_paths import config_relpath, is_safe_id


def safe_id(value: str) -> bool:
    if not is_safe_id(value):
        raise ValidationError("must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    return True


def safe_config_path(value: str) -> bool:
    try:
        config_relpath(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    return True
