"""What every validated configuration of cct-train shares (the training config, the study config): a
section that forbids unknown keys, the error type, and one way to list validation errors.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration could not be loaded; the message names the file and the offending keys."""


class StrictSection(BaseModel):
    """A config section that forbids unknown keys (a typo is named, not ignored) and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def format_errors(error: ValidationError) -> str:
    """Every error of a validation, one ``  key.path: message`` line each."""
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)
