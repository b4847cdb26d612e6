"""YAML in, `Config` out: `key=value` overrides (values parsed as YAML), relative paths resolved next to
the config file, every error naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cct_train.common.atomic import atomic_write_text
from cct_train.config.base import ConfigError, Location, format_errors, rename_keys
from cct_train.config.schema import Config

#: YAML 1.1 reads these as booleans; on the command line they are words (`data.check=off`). Pydantic
#: still turns them into booleans for boolean keys.
_WORDS = {"on", "off", "yes", "no", "y", "n"}


def _parse_value(text: str) -> Any:
    # YAML scalars: `8`, `0.5`, `true`, `[1, 2]`, `{a: 1}`, `null`; anything else stays a string.
    if text.strip().lower() in _WORDS:
        return text.strip()
    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML) to a nested dict, returning a new dict."""
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        node: Any = result
        for part in parts[:-1]:
            if isinstance(node, list):
                node = _list_item(node, part, item)
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, (dict, list)):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        if isinstance(node, list):
            raise ConfigError(f"override {item!r}: replace a whole list as `{'.'.join(parts[:-1])}=[...]`")
        try:
            node[parts[-1]] = _parse_value(raw)
        except yaml.constructor.ConstructorError as error:  # `!!python/object/apply:...`: never built
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(
                f"override {item!r}: the value is not plain YAML ({problem}); tags such as !!python/... "
                "are refused. Write a plain number, word or list, quoted if it must stay text."
            ) from None
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(
                f"--set {item}: the value {raw!r} is not valid YAML ({problem}). Values are read as YAML: "
                "close every bracket and brace, e.g. --set 'model.perturbations={feature_noise: 1}', and "
                "quote the whole --set argument in the shell"
            ) from None
    return result


def _list_item(items: list[Any], part: str, item: str) -> dict[str, Any]:
    """``domains.0`` (an index) or ``domains.camvid`` (the entry whose ``name`` is camvid)."""
    for entry in items:
        if isinstance(entry, dict) and str(entry.get("name")) == part:
            return entry
    if part.isdigit() and int(part) < len(items) and isinstance(items[int(part)], dict):
        return items[int(part)]  # type: ignore[no-any-return]
    names = [str(e.get("name")) for e in items if isinstance(e, dict)]
    raise ConfigError(f"override {item!r}: no entry {part!r} in the list (names: {names}, or an index)")


def config_from_dict(
    data: Mapping[str, Any],
    source: str = "<dict>",
    origins: Mapping[Location, str] | None = None,
    prefix: str = "",
) -> Config:
    """Validate a config dict; errors name each key (after ``prefix``), where it was read (``origins``) and
    the keys meant."""
    try:
        return Config.model_validate(dict(data))
    except ValidationError as error:
        details = format_errors(error, schema=Config, origins=origins, prefix=prefix)
        raise ConfigError(f"invalid configuration in {source}:\n{details}") from None


def upgrade_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config stored by an earlier cct-train (a checkpoint's ``config``, a run folder's config.yaml) with
    the keys renamed since under their new names (each section's ``renamed_keys``), for
    :func:`config_from_dict`. Only stored configs are translated: in a config file, ``--set`` or a study,
    an old key is refused with its new name."""
    return rename_keys(data, Config)


def key_lines(text: str) -> dict[Location, int]:
    """The line (1-based) of every key of a YAML document: ``{("train", "iterations"): 31, ...}``."""
    lines: dict[Location, int] = {}

    def walk(node: yaml.Node, path: Location) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                lines[(*path, index)] = value.start_mark.line + 1
                walk(value, (*path, index))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def override_keys(overrides: Iterable[str]) -> dict[Location, str]:
    """``{("train", "iterations"): "--set train.iterations=20"}`` for the overrides given."""
    keys: dict[Location, str] = {}
    for item in overrides:
        key = item.split("=", 1)[0]
        parts: Location = tuple(int(p) if p.isdigit() else p for p in key.strip().split(".") if p)
        keys[parts] = f"--set {item}"
    return keys


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    origins: dict[Location, str] = {}
    overrides = list(overrides)
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
        origins = {key: f"{path}, line {line}" for key, line in key_lines(path.read_text()).items()}
        # A relative path that does not exist from the working directory is tried relative to the
        # config file, so a config can travel together with its data and split lists.
        data = _resolve_relative_paths(data, path.parent)
    data = apply_overrides(data, overrides)
    for key, where in override_keys(overrides).items():
        # The override replaced what the file had there, down to the last list entry.
        origins = {k: v for k, v in origins.items() if k[: len(key)] != key}
        origins[key] = where
    if overrides:
        source = f"{source} with --set" if path is not None else "--set"
    return config_from_dict(data, source, origins)


_PATH_KEYS = {
    ("data", "root"),
    ("data", "unlabeled_root"),
    ("data", "pseudo_labels"),
    ("data", "split", "labeled_list"),
    ("data", "split", "unlabeled_list"),
    ("model", "weights"),
}


def _resolve_relative_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    domains = data.get("domains")
    if isinstance(domains, list):
        for domain in domains:
            if isinstance(domain, dict):
                _resolve_relative_paths({"data": domain.get("data")}, base)
    for keys in _PATH_KEYS:
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            value = Path(node[keys[-1]]).expanduser()
            if not value.is_absolute() and not value.exists() and (base / value).exists():
                node[keys[-1]] = str(base / value)
    return data


def save_config(config: Config, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
