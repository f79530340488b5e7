"""Config loading and validation."""

from modelway.config.loader import load_config, parse_config
from modelway.config.schema import Config

__all__ = ["Config", "load_config", "parse_config"]
