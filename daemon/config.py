"""Config overlays: YAML files merged left to right, validated into `Settings`.

Mappings merge key by key (the later file wins on a conflict); any other value, lists included,
is replaced whole. Every key remembers the file that set it last, so an error names that file
and the key path: `config/risk_balanced.yaml: risk.max_gross: must be greater than 0`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import annotated_types
import orjson
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from composer.registry import StrategyRegistry, UnknownStrategyError, load_registry
from composer.settings import StrategySpec
from composer.strategy import Strategy
from daemon.execution import check_execution
from daemon.settings import Settings
from feeds.errors import ConfigError, printable

Loc = tuple[str | int, ...]
# Settings added after the digest's first use (0.1.0) enter it only when set away from their
# default, so a config's digest (and its orders' client id prefix) survives an upgrade that adds
# them. `notify` never changes a decision and never enters it.
_NOT_DIGESTED = {"notify"}
_ADDED_LATER: tuple[tuple[str, str], ...] = (
    ("live", "max_decision_age_s"),
    ("state", "retention"),
    ("live", "connection_limit_backoff_s"),
)
_SECTIONS_ADDED_LATER = ("execution",)
_SECRET_WORDS = ("secret", "token", "password", "api_key", "apikey")
_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
_SHOWN = 40  # characters of a rejected value quoted in a message


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    settings: Settings
    files: tuple[str, ...]
    origins: Mapping[Loc, str]

    def origin(self, loc: Loc) -> str:
        return _origin(self.origins, loc, self.files)

    @property
    def digest(self) -> str:
        """A short hash of the resolved settings: the same config gives the same digest."""
        settings = self.settings.model_dump(mode="json", exclude=_NOT_DIGESTED)
        for section, key in _ADDED_LATER:
            default = Settings.model_fields[str(section)].get_default(call_default_factory=True)
            node = settings.get(str(section), {})
            if key in node and node[key] == default.model_dump(mode="json").get(key):
                del node[key]
        for section in _SECTIONS_ADDED_LATER:
            default = Settings.model_fields[section].get_default(call_default_factory=True)
            if settings.get(section) == default.model_dump(mode="json"):
                del settings[section]
        dumped = orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(dumped).hexdigest()[:8]


def read_overlays(paths: Sequence[str]) -> tuple[dict[str, Any], dict[Loc, str]]:
    """Read and merge the files; return the merged tree and each key's origin file."""
    if not paths:
        raise ConfigError("no config file given")
    merged: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    for path in paths:
        _merge(merged, _read_yaml(path), origins, path, ())
    return merged, origins


def load_config(
    paths: Sequence[str],
    overrides: Mapping[Loc, Any] | None = None,
    *,
    registry: StrategyRegistry | None = None,
    overrides_origin: str = "command line",
) -> LoadedConfig:
    """Read, merge and validate the overlays; `overrides` (from the command line) win last.

    Every strategy's type and params are checked too (against `registry`, by default the
    built-ins and the installed plugins), so a config that loads is one a replay can build.
    `overrides_origin` names where the overrides came from in messages (the command line, or
    the Python call that passed them).

    Raises:
        ConfigError: one line naming the file and the key path of each problem.
    """
    tree, origins = read_overlays(paths)
    setter = "the command line" if overrides_origin == "command line" else overrides_origin
    for loc, value in (overrides or {}).items():
        node: dict[str, Any] = tree
        for depth, key in enumerate(loc[:-1], 1):
            child = node.setdefault(str(key), {})
            if not isinstance(child, dict):
                where = loc[:depth]
                raise ConfigError(
                    f"{_origin(origins, where, paths)}: {_dotted(where)}: must be a mapping of "
                    f"keys, not {_kind(child)} ({setter} sets {_dotted(loc)})"
                )
            node = child
        node[str(loc[-1])] = value
        origins[loc] = overrides_origin
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_describe(e, Settings, origins, tuple(paths), ())) from None
    loaded = LoadedConfig(settings=settings, files=tuple(paths), origins=origins)
    check_execution(
        settings.execution, settings.data.timeframe, loaded.origin(("execution", "style"))
    )
    registry = registry if registry is not None else load_registry()
    for sid, spec in settings.strategies.items():
        _params(loaded, registry, sid, spec)
    return loaded


def build_strategies(
    loaded: LoadedConfig, registry: StrategyRegistry, universe: Sequence[str]
) -> dict[str, Strategy[Any]]:
    """Instantiate the configured strategies; errors name the file and key path."""
    built: dict[str, Strategy[Any]] = {}
    for sid, spec in loaded.settings.strategies.items():
        symbols = spec.symbols if spec.symbols is not None else list(universe)
        unknown = [s for s in symbols if s not in universe]
        if unknown:
            loc: Loc = ("strategies", sid, "symbols")
            raise ConfigError(
                f"{loaded.origin(loc)}: {_dotted(loc)}: not in the universe: {', '.join(unknown)}"
                f"; universe: {', '.join(universe)}"
            )
        cls, params = _params(loaded, registry, sid, spec)
        built[sid] = cls(params, symbols)
    return built


def _params(
    loaded: LoadedConfig, registry: StrategyRegistry, sid: str, spec: StrategySpec
) -> tuple[type[Strategy[Any]], BaseModel]:
    """The class of a configured strategy and its validated params."""
    name = spec.type or sid
    where: Loc = ("strategies", sid, "type") if spec.type else ("strategies", sid)
    try:
        cls = registry.get(name)
    except UnknownStrategyError as e:
        raise ConfigError(f"{loaded.origin(where)}: {_dotted(where)}: {e}") from None
    try:
        return cls, cls.params_model.model_validate(dict(spec.params))
    except ValidationError as e:
        prefix: Loc = ("strategies", sid, "params")
        raise ConfigError(
            _describe(e, cls.params_model, loaded.origins, loaded.files, prefix)
        ) from None


def redacted(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain data, with any secret-looking value hidden."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: "***" if any(w in k.lower() for w in _SECRET_WORDS) else walk(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(settings.model_dump(mode="json"))
    return result


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: YAML syntax error: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {_kind(data)}")
    return data


def _merge(
    into: dict[str, Any], new: Mapping[str, Any], origins: dict[Loc, str], path: str, loc: Loc
) -> None:
    for key, value in new.items():
        here = (*loc, str(key))
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            origins[here] = path
            _merge(into[key], value, origins, path, here)
            continue
        into[key] = value
        # A replaced subtree forgets what earlier files set inside it.
        for old in [o for o in origins if o[: len(here)] == here]:
            del origins[old]
        origins[here] = path
        if isinstance(value, dict):
            _mark(value, origins, path, here)


def _mark(node: Mapping[str, Any], origins: dict[Loc, str], path: str, loc: Loc) -> None:
    for key, value in node.items():
        origins[(*loc, str(key))] = path
        if isinstance(value, dict):
            _mark(value, origins, path, (*loc, str(key)))


def _origin(origins: Mapping[Loc, str], loc: Loc, files: Sequence[str]) -> str:
    key = tuple(str(p) for p in loc)
    while key:
        if key in origins:
            return origins[key]
        key = key[:-1]
    return files[-1] if len(files) == 1 else f"{' + '.join(files)} (merged)"


def _describe(
    error: ValidationError,
    model: type[BaseModel],
    origins: Mapping[Loc, str],
    files: Sequence[str],
    prefix: Loc,
) -> str:
    lines = []
    for err in error.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        full = (*prefix, *loc)
        message = _message(err, model, loc)
        where = _origin(origins, full, files)
        lines.append(f"{where}: {_dotted(full)}: {message}" if full else f"{where}: {message}")
    # One line, as every error of the command line: several problems are joined by "; ".
    return "; ".join(lines)


def _message(err: Any, model: type[BaseModel], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        fields = _fields_at(model, loc[:-1])
        known = f"; expected one of: {', '.join(sorted(fields))}" if fields else ""
        return f"unknown key{known}"
    if kind == "missing":
        return "required, not set"
    if kind in (*_BOUND_ERRORS, "finite_number"):
        bounds = _bounds(model, loc)
        if bounds:
            finite = "a finite number " if kind == "finite_number" else ""
            return f"must be {finite}{bounds}, got {_shown(err.get('input'))}"
    msg = printable(str(err["msg"]))
    for old, new in (("Input should be", "must be"), ("Value error, ", ""), ("Input ", "")):
        msg = msg.replace(old, new)
    return msg


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at `loc` (through nested models and dict values)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
        current = _unwrap(current)
    if get_origin(current) is dict:
        return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _bounds(model: type[BaseModel], loc: Loc) -> str | None:
    """The allowed range of the field at `loc`, in words: `from 1 to 100,000`, `greater than
    0 and at most 1,000,000,000,000`; None if the field is not found."""
    field = _field_at(model, loc)
    if field is None:
        return None
    low = high = ""
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            low = f"at least {_number(m.ge)}"
        elif isinstance(m, annotated_types.Gt):
            low = f"greater than {_number(m.gt)}"
        elif isinstance(m, annotated_types.Le):
            high = f"at most {_number(m.le)}"
        elif isinstance(m, annotated_types.Lt):
            high = f"less than {_number(m.lt)}"
    if low.startswith("at least") and high.startswith("at most"):
        return f"from {low.removeprefix('at least ')} to {high.removeprefix('at most ')}"
    return " and ".join(part for part in (low, high) if part) or None


def _field_at(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """The field (or the constrained dict value type) at `loc` of `model`."""
    current: Any = model
    field: FieldInfo | None = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
            if get_origin(current) is Annotated:
                found = [a for a in current.__metadata__ if isinstance(a, FieldInfo)]
                field = found[0] if found else None
                current = get_args(current)[0]
            else:
                field = None
        else:
            return None
    return field


def _number(value: Any) -> str:
    """A bound for a person: whole numbers as integers, with thousands separators from 10,000."""
    if isinstance(value, int | float | Decimal) and math.isfinite(value) and value == int(value):
        whole = int(value)
        return f"{whole:,}" if abs(whole) >= 10_000 else str(whole)
    return str(value)


def _shown(value: Any) -> str:
    text = printable(str(value))
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X, so the walk can go on into optional sub-models."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not dict and len(args) == 1:
        return args[0]
    return annotation


def _dotted(loc: Loc) -> str:
    return printable(".".join(str(p) for p in loc))


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def run_overrides(
    *,
    data: str | os.PathLike[str] | None,
    symbols: Sequence[str] | None,
    start: date | str | None,
    end: date | str | None,
) -> dict[Loc, Any]:
    """The overrides a run's arguments make (data.path, symbols, run.start, run.end): what the
    command line's `--data/--symbols/--start/--end` and the Python API's keywords set alike."""
    out: dict[Loc, Any] = {}
    if data is not None:
        out[("data", "path")] = os.fspath(data)
    if symbols is not None:
        out[("symbols",)] = list(symbols)
    if start is not None:
        out[("run", "start")] = start.isoformat() if isinstance(start, date) else start
    if end is not None:
        out[("run", "end")] = end.isoformat() if isinstance(end, date) else end
    return out
