"""Validation of settings objects, every problem gathered into one :class:`ConfigError`."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ajuste.data.settings import DataSettings
from ajuste.errors import AjusteError, ConfigError
from ajuste.models.registry import FAMILIES, ModelSettings
from ajuste.models.settings import FamilySettings
from ajuste.training.settings import DistillSettings, TrainSettings

__all__ = ["folder_path", "model_settings", "register_section", "settings_mapping", "validate", "validation_messages"]

T = TypeVar("T", bound=BaseModel)

_SECTIONS: dict[str, list[type[BaseModel]]] = {
    "data": [DataSettings],
    "model": list(dict.fromkeys(entry.settings for entry in FAMILIES.values())),
    "train": [TrainSettings],
    "distill": [DistillSettings],
}
_TOP_LEVEL = ["data", "model", "train", "seed", "out"]
_FAMILIES: dict[str, type[BaseModel]] = {name: entry.settings for name, entry in FAMILIES.items()}
_EXPECTED_FAMILIES = ", ".join(FAMILIES)
#: Names people write for a data section's sources, which the closest spelling would mistake.
_ALIASES = {
    "data": ["'path' (a file)", "'dataset' (a built-in)"],
    "file": ["'path' (a file)", "'dataset' (a built-in)"],
}

_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of names to values",
    "model_type": "must be a mapping of names to values",
    "model_attributes_type": "must be a mapping of names to values",
    "missing": "is required",
}


def register_section(name: str, settings: type[BaseModel]) -> None:
    """Name the settings class of a config's section ``name`` (a search's ``tune``), for "unknown setting"
    messages: the package that defines it registers it, so that this module imports none of them."""
    _SECTIONS[name] = [settings]


def _known_at(location: tuple[str | int, ...], family: str | None = None) -> list[str]:
    if len(location) <= 1:
        return _TOP_LEVEL
    names: list[str] = []
    # Under a model family only that family's settings are known: a gpt setting is no typo under bag.
    models = [_FAMILIES[family]] if family in _FAMILIES else _SECTIONS.get(str(location[0]), [])
    for model in models:
        names += [n for n in model.model_fields if n not in names]
    return names


_SCALARS = frozenset({"int", "float", "str", "bool", "none", "bytes"})


def _branch(part: object) -> bool:
    """Whether a part of a pydantic error's location names the member of a union that failed (``int``,
    ``literal['auto','off']``) rather than a setting: a setting's name holds no brackets nor hyphens."""
    return isinstance(part, str) and (part in _SCALARS or "[" in part or "-" in part)


def _merge_branches(errors: list[Any]) -> list[Any]:
    """A value that matched no member of a union fails once per member, each with the member's name last in its
    location (``screen.literal['auto','off']``, ``screen.int``): the user sees one setting, so the members'
    errors become one, with their messages side by side."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for error in errors:
        loc = tuple(error["loc"])
        key = loc[:-1] if loc and _branch(loc[-1]) else loc
        groups.setdefault(key, []).append(error)
    merged = []
    for key, members in groups.items():
        if len(members) == 1 or not all(tuple(m["loc"])[:-1] == key for m in members):
            merged += members
            continue
        merged.append({**members[0], "loc": key, "members": members})
    return merged


def validation_messages(exc: ValidationError, prefix: str = "") -> list[str]:
    """One readable line per problem in a pydantic error: ``where: what (got value)``."""
    tags = set(_FAMILIES)
    lines = []
    for error in _merge_branches(list(exc.errors())):
        if "members" in error:
            where = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(error["loc"])) or "settings"
            first, *others = dict.fromkeys(_message(member) for member in error["members"])
            wanted = ", or ".join([first, *(other.removeprefix("must be ") for other in others)])
            lines.append(f"{where}: {wanted}, got {error['input']!r}")
            continue
        location = tuple(part for part in error["loc"] if part not in tags or not isinstance(part, str))
        family = next((part for part in error["loc"] if isinstance(part, str) and part in tags), None)
        where = ".".join(str(p) for p in ((prefix,) if prefix else ()) + location) or "settings"
        kind = error["type"]
        if kind == "extra_forbidden":
            known = _known_at(((prefix,) if prefix else ()) + location, family)
            section = (((prefix,) if prefix else ()) + location)[0]
            aliases = _ALIASES.get(str(location[-1])) if section == "data" else None
            guess = aliases or difflib.get_close_matches(str(location[-1]), known, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else f"; known: {', '.join(known)}"
            if len(guess) > 1:  # a word that means either of two settings
                hint = f"; did you mean {' or '.join(guess)}?"
            lines.append(f"{where}: unknown setting{f' for family {family}' if family else ''}{hint}")
            continue
        if kind == "union_tag_not_found":
            lines.append(f"{where}.family: is required; expected one of {_EXPECTED_FAMILIES}")
            continue
        if kind == "union_tag_invalid":
            found = error.get("ctx", {}).get("tag")
            got = "" if found is None else f", got {found!r}"
            several = (
                " (to search several: [[--model bag,gpt||ajuste.tune(model=['bag', 'gpt'])]], or the space's "
                "model.family)"
                if str(found).startswith("[")
                else ""
            )
            lines.append(f"{where}.family: unknown model family{got}; expected one of {_EXPECTED_FAMILIES}{several}")
            continue
        message = _message(error)
        already_shown = kind == "value_error" and ", got " in message  # our validators name the value
        if kind != "missing" and "input" in error and not isinstance(error["input"], dict) and not already_shown:
            message += f", got {error['input']!r}"
        lines.append(f"{where}: {message}")
    return lines


def _message(error: Any) -> str:
    """What one pydantic error asks for, in words (without the value it got)."""
    kind = error["type"]
    if kind == "literal_error":
        return "must be " + str(error.get("ctx", {}).get("expected", "")).replace("'", "")
    if kind in _MESSAGES:
        return str(_MESSAGES[kind].format(**error.get("ctx", {})))
    return str(error["msg"]).removeprefix("Value error, ")


def _invalid(exc: ValidationError, prefix: str) -> AjusteError:
    """The error to raise for ``exc``: a validator's own AjusteError as it was raised (it is a ValueError, so
    pydantic wrapped it, and its message already says what was expected and how to fix it), else every problem
    gathered into one :class:`ConfigError`."""
    for error in exc.errors():
        raised = error.get("ctx", {}).get("error")
        if isinstance(raised, AjusteError):
            return raised
    return ConfigError("invalid settings: " + "; ".join(validation_messages(exc, prefix)))


def validate(model: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """``model(**values)``, with every problem gathered into one :class:`ConfigError`; a ``pathlib.Path`` among
    the values (a data file, an output folder) is taken as the path it names."""
    try:
        return model.model_validate(_paths_as_text(values))
    except ValidationError as exc:
        raise _invalid(exc, prefix) from None


def _paths_as_text(value: Any) -> Any:
    """``value`` with every ``os.PathLike`` in it (in nested mappings and lists too) as its text."""
    import os

    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {key: _paths_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_paths_as_text(item) for item in value]
    return value


def model_settings(values: dict[str, Any]) -> FamilySettings:
    """Validate a ``model:`` section alone."""
    adapter: TypeAdapter[FamilySettings] = TypeAdapter(ModelSettings)
    try:
        return adapter.validate_python(values)
    except ValidationError as exc:
        raise _invalid(exc, "model") from None


def settings_mapping(value: Any, name: str, example: str) -> dict[str, Any]:
    """The settings given to an API function as ``name`` (empty when None); a ConfigError for anything but a
    mapping, with ``example`` as the fix."""
    from collections.abc import Mapping

    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(
            f"{name} is a mapping of setting names to values", found=type(value).__name__, fix=f"Pass {example}."
        )
    return dict(value or {})


def folder_path(out: Any) -> str | None:
    """An API function's ``out``: the path of a folder as text, or None for the default; a ConfigError else."""
    import os

    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise ConfigError("out is the path of a folder", found=type(out).__name__, fix="Pass out='runs/name', or None.")
    return str(out) if out is not None else None
