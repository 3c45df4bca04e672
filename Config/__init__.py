"""Configuration: the `Config` dataclass, presets, and the `--key=value` parser."""
from .cli import ConfigError, apply_overrides, help_text, parse_config, validate
from .config import Config
from .presets import PRESETS

__all__ = ["Config", "ConfigError", "PRESETS", "apply_overrides", "help_text", "parse_config", "validate"]
