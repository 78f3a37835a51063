"""Exceptions shared by every layer. Each message names what was wrong (file, field or value)."""
from __future__ import annotations

__all__ = ["NasengineError", "InputError", "ImageError", "DataError", "ConfigError", "ValidationError"]


class NasengineError(Exception):
    """Base class of every error nasengine raises on purpose (the CLI prints it as one line)."""


class InputError(NasengineError, ValueError):
    """A bad argument or value given by the user (a scale of 0, an unknown pipeline, ...)."""


class ImageError(InputError):
    """An image file that cannot be read or used. ``path`` is the offending file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DataError(InputError):
    """A dataset that cannot be used (missing or empty folder, unknown name, image too small, ...)."""


class ConfigError(InputError):
    """A configuration or preset value that is wrong; the message names the field."""


class ValidationError(InputError):
    """A genome or architecture graph that is malformed; ``field`` names the offending part."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)
