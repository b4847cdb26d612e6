"""What every validated configuration of cct-train shares (the training config, the study config): a
section that forbids unknown keys, the error type, and one way to list validation errors.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A configuration could not be loaded; the message names the file and the offending keys."""


class StrictSection(BaseModel):
    """A config section that forbids unknown keys (a typo is named, not ignored) and validates assignments.

    ``renamed_keys``: this section's keys of earlier versions, ``{old: new}``. An old key is refused like any
    unknown key, its error naming the new one (:func:`format_errors`); only a config stored by an earlier
    version (a checkpoint's) is translated, by :func:`rename_keys`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    renamed_keys: ClassVar[Mapping[str, str]] = {}


Location = tuple[str | int, ...]
"""A key's path in a config: ``("train", "iterations")``, ``("domains", 0, "data", "root")``."""


def format_errors(
    error: ValidationError,
    *,
    schema: type[BaseModel] | None = None,
    origins: Mapping[Location, str] | None = None,
    prefix: str = "",
) -> str:
    """Every error of a validation, one ``  key.path (where): message`` line each.

    ``schema`` (the validated model class): an unknown key gets a "did you mean" with the closest keys of
    its section, or the section that does have a key of that name. ``origins``: where each key was read
    (``"config.yaml, line 12"``, ``"--set train.iterations=20"``); an error names the origin of its key, of
    the closest enclosing key that has one, or of the one key set inside it. A wrong value is shown as read.
    ``prefix``: where the validated mapping sits in a larger one (``"base."`` of a study), put before keys.
    """
    lines = []
    for item in error.errors():
        loc: Location = tuple(item["loc"])
        key = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key" + (_suggestion(schema, loc, prefix) if schema is not None else "")
        elif "input" in item and _is_scalar(item["input"]) and loc:
            message += f" (got {_shown(item['input'])})"
        where = _origin(loc, origins or {})
        lines.append(f"  {key}{f' ({where})' if where else ''}: {message}")
    return "\n".join(lines)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | tuple)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _origin(loc: Location, origins: Mapping[Location, str]) -> str:
    """The origin of ``loc`` or of the closest enclosing key that has one (a whole section set at once)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    # An unknown section (`trian`) made by an override of a key inside it (`--set trian.iterations=5`).
    inside = [where for key, where in origins.items() if key[: len(loc)] == loc and loc]
    return inside[0] if len(inside) == 1 else ""


def _fields(model: type[BaseModel] | None) -> dict[str, Any]:
    return dict(model.model_fields) if model is not None else {}


def _section(annotation: Any) -> type[BaseModel] | None:
    """The config section class inside a field's annotation (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _section(argument)
        if found is not None:
            return found
    return None


def _section_at(schema: type[BaseModel], path: Location) -> type[BaseModel] | None:
    model: type[BaseModel] | None = schema
    for part in path:
        if isinstance(part, int):
            continue  # a list entry: the same section class
        field = _fields(model).get(part)
        if field is None:
            return None
        model = _section(field.annotation)
    return model


def _all_keys(schema: type[BaseModel], prefix: str = "", depth: int = 0) -> list[str]:
    """Every dotted key of the schema (lists of sections and deep nesting left out)."""
    keys = []
    for name, field in _fields(schema).items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        inner = _section(field.annotation)
        if inner is not None and depth < 3 and typing.get_origin(field.annotation) is not list:
            keys += _all_keys(inner, f"{dotted}.", depth + 1)
    return keys


def _renamed(section: type[BaseModel] | None) -> Mapping[str, str]:
    return getattr(section, "renamed_keys", {}) if section is not None else {}


def _suggestion(schema: type[BaseModel], loc: Location, top: str = "") -> str:
    """ "; did you mean train.iterations?" from the keys of the section, else keys of that name elsewhere;
    for a key of an earlier version, its new name."""
    name = str(loc[-1])
    parent = ".".join(str(p) for p in loc[:-1])
    prefix = f"{top}{parent}." if parent else top
    section = _section_at(schema, loc[:-1])
    new = _renamed(section).get(name)
    if new is not None:
        inner = _renamed(_section_at(schema, (*loc[:-1], new)))
        inside = "".join(f", and its {o} is now {n}" for o, n in inner.items())
        return f"; it was renamed {prefix}{new} (cct-train 0.4){inside}"
    known = list(_fields(section))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f"{prefix}{c}" for c in close) + "?"
    elsewhere = [k for k in _all_keys(schema) if k.rsplit(".", 1)[-1] == name]
    if not elsewhere:
        leaves = {k.rsplit(".", 1)[-1]: k for k in _all_keys(schema)}
        elsewhere = [leaves[c] for c in difflib.get_close_matches(name, list(leaves), n=2, cutoff=0.75)]
    if elsewhere:
        return f"; it belongs elsewhere: {' or '.join(top + k for k in elsewhere)}?"
    return f"; {parent or 'the top level'} has: {', '.join(known)}" if known else ""


def rename_keys(data: Mapping[str, Any], schema: type[BaseModel], *, to_old: bool = False) -> dict[str, Any]:
    """A copy of a config mapping with the keys ``schema``'s sections renamed (``renamed_keys``) under their
    new names: how a config stored by an earlier version (a checkpoint's) is read. ``to_old``: the other
    way, today's names back to the earlier ones (a study's run fingerprints stay those of its finished
    runs). A key whose new name is also present is left as it is (validation then names it).
    """
    renames = {new: old for old, new in _renamed(schema).items()} if to_old else dict(_renamed(schema))
    out: dict[str, Any] = {}
    for key, value in data.items():
        target = renames.get(key, key)
        if target != key and target in data:
            target = key
        # Nested sections by today's field names: the key's new name reading, its own when writing back.
        field = _fields(schema).get(key if to_old else target)
        inner = _section(field.annotation) if field is not None else None
        if inner is not None and isinstance(value, Mapping):
            value = rename_keys(value, inner, to_old=to_old)
        elif inner is not None and isinstance(value, list):
            value = [rename_keys(v, inner, to_old=to_old) if isinstance(v, Mapping) else v for v in value]
        out[target] = value
    return out
