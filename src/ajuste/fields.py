"""The base of every settings class: a number is never given as true or false, nor as NaN or infinity.

Pydantic reads ``true`` as 1 where a number is expected, so a YAML file's ``epochs: true`` (or ``lr: on``,
YAML 1.1's boolean) would train for one epoch without a word; here it is a validation error like any other.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["Settings"]


def _numeric_only(annotation: Any) -> bool:
    """Whether ``annotation`` takes numbers alone (``int``, ``float | None``, ...): a field that also takes words
    (``int | Literal["auto", "off"]``) reads YAML's booleans its own way."""
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = set(get_args(annotation))
    else:
        kinds = {annotation}
    return bool(kinds & {int, float}) and kinds <= {int, float, type(None)}


class Settings(BaseModel):
    """A settings class whose numeric fields refuse ``true`` and ``false``, and NaN and infinity (which the bounds
    of a field would otherwise report as out of range)."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for name, value in values.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if isinstance(value, bool) and field is not None and _numeric_only(field.annotation):
                    raise ValueError(f"{name} must be a number, got {str(value).lower()}")
        return values
