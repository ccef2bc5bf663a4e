"""Typed environment config (pydantic v2): the `stamps:` keys of a stack file."""

from stamps.config.errors import ConfigError
from stamps.config.model import StampsConfig

__all__ = ["ConfigError", "StampsConfig"]
