"""Model-level examples for the OpenAPI document, written once per model as plain data."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict
from pydantic.config import JsonDict

__all__ = ["example"]


def example(*examples: JsonDict, **config: Any) -> ConfigDict:
    """A model's config carrying `examples` (each a whole, valid instance) plus any other settings."""
    settings: ConfigDict = {"json_schema_extra": {"examples": list(examples)}, **config}  # type: ignore[typeddict-item]
    return settings
