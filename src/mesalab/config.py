"""Frozen configuration dataclasses: validated on construction, round-trip through JSON, usable under `vmap`.

A config class is declared with `@config(dynamic=(...))`. Fields named in `dynamic` become pytree leaves, so an
ensemble can stack different values of them (a per-member noise level, say) and `vmap` over the stack; every other
field is static and decides the shapes of the compiled program.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot work: the message names the field, the value and what is allowed."""


def concrete(value: Any) -> bool:
    """True for plain Python values; validation is skipped for tracers and stacked ensemble arrays."""
    return isinstance(value, (bool, int, float, str, tuple, type(None)))


def require(cfg: Any, field: str, ok: bool, allowed: str) -> None:
    """Raise a `ConfigError` naming `cfg.field`, its value and the allowed values unless `ok`."""
    value = getattr(cfg, field)
    if not concrete(value):
        return
    if not ok:
        raise ConfigError(f"{type(cfg).__name__}.{field} = {value!r} is not allowed; expected {allowed}")


def require_positive(cfg: Any, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        if concrete(v):
            require(cfg, f, isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a number > 0")


def require_nonnegative(cfg: Any, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        if concrete(v):
            require(cfg, f, isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "a number >= 0")


def require_choice(cfg: Any, field: str, choices: tuple[str, ...]) -> None:
    require(cfg, field, getattr(cfg, field) in choices, "one of " + ", ".join(repr(c) for c in choices))


def config(cls: type[T] | None = None, *, dynamic: tuple[str, ...] = ()) -> Any:
    """Make `cls` a frozen dataclass registered as a pytree whose leaves are the `dynamic` fields."""

    def wrap(c: type[T]) -> type[T]:
        c = dataclasses.dataclass(frozen=True)(c)
        names = [f.name for f in dataclasses.fields(c)]
        unknown = set(dynamic) - set(names)
        if unknown:
            raise TypeError(f"{c.__name__}: dynamic fields {sorted(unknown)} are not fields")
        jax.tree_util.register_dataclass(
            c, data_fields=list(dynamic), meta_fields=[n for n in names if n not in dynamic]
        )
        c.__mesalab_dynamic__ = tuple(dynamic)
        return c

    return wrap(cls) if cls is not None else wrap


def dynamic_fields(cfg: Any) -> tuple[str, ...]:
    return getattr(type(cfg), "__mesalab_dynamic__", ())


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (nested configs become nested dicts, tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, (np.ndarray, jax.Array)):
            v = np.asarray(v).tolist()
        out[f.name] = v
    return out


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(tp: Any, value: Any) -> Any:
    """Turn a JSON value back into the declared field type (lists to tuples, dicts to nested configs)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for a in args:
            try:
                return _coerce(a, value)
            except (TypeError, ValueError):
                continue
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value)
    if (origin is tuple or tp is tuple) and isinstance(value, list):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) if inner is not Ellipsis else v for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a dict made by `to_dict`; unknown keys are rejected with the list of valid ones."""
    types_ = _field_types(cls)
    unknown = set(data) - set(types_)
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no field(s) {sorted(unknown)}; valid fields: {', '.join(sorted(types_))}"
        )
    return cls(**{k: _coerce(types_[k], v) for k, v in data.items()})


def to_json(cfg: Any) -> str:
    return json.dumps({"type": type(cfg).__name__, **to_dict(cfg)}, sort_keys=True)


def override(cfg: T, **changes: Any) -> T:
    """`dataclasses.replace` with a clear error for unknown fields."""
    valid = {f.name for f in dataclasses.fields(cfg)}
    unknown = set(changes) - valid
    if unknown:
        raise ConfigError(
            f"{type(cfg).__name__} has no field(s) {sorted(unknown)}; valid fields: {', '.join(sorted(valid))}"
        )
    return dataclasses.replace(cfg, **changes)


def stack_configs(cfgs: list[T]) -> T:
    """Stack configs that differ only in dynamic fields into one config with [E]-array leaves."""
    if not cfgs:
        raise ConfigError("an ensemble needs at least one member (seeds >= 1)")
    first = cfgs[0]
    for c in cfgs[1:]:
        for f in dataclasses.fields(first):
            if f.name not in dynamic_fields(first) and getattr(c, f.name) != getattr(first, f.name):
                raise ConfigError(
                    f"ensemble members differ in static field {type(first).__name__}.{f.name} "
                    f"({getattr(first, f.name)!r} vs {getattr(c, f.name)!r}); only "
                    f"{', '.join(dynamic_fields(first)) or 'no fields'} may differ within one ensemble"
                )
    return jax.tree_util.tree_map(lambda *xs: np.asarray(xs, dtype=np.float32), *cfgs)


def parse_value(cls: type, field: str, text: str) -> Any:
    """Turn the text of `--set field=text` into the field's declared type, or raise a ConfigError saying what the
    field accepts."""
    types_ = _field_types(cls)
    if field not in types_:
        close = difflib.get_close_matches(field, list(types_), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{cls.__name__} has no field {field!r}; {hint}valid keys: {', '.join(sorted(types_))}")
    tp = types_[field]
    options = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
        typing.Union, types.UnionType) else [tp]
    if len(options) < (len(typing.get_args(tp)) or 1) and text.lower() in ("none", "null"):
        return None
    for option in options:
        try:
            return _parse_as(option, text)
        except (TypeError, ValueError):
            continue
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{cls.__name__}.{field} = {text!r} is not allowed; expected {names}")


def _parse_as(tp: Any, text: str) -> Any:
    if tp is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    if typing.get_origin(tp) is tuple or tp is tuple:
        inner = (typing.get_args(tp) or (str,))[0]
        # "1,2", "(1, 2)" and "[1, 2]" all parse; "", "()" and "[]" are the empty tuple.
        return tuple(_parse_as(inner, t.strip()) for t in text.strip("()[] ").split(",") if t.strip())
    raise TypeError(tp)


def parse_assignments(cls: type, items: list[str]) -> dict[str, Any]:
    """["lr=3e-3", "seeds=2"] -> {"lr": 0.003, "seeds": 2}, validated against the fields of `cls`."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got {item!r}; valid keys: {', '.join(sorted(_field_types(cls)))}")
        key, text = item.split("=", 1)
        out[key.strip()] = parse_value(cls, key.strip(), text.strip())
    return out


def read_config_file(cls: type, path: str | Path) -> dict[str, Any]:
    """The key = value pairs of a JSON (.json) or TOML (.toml) file, each parsed and validated as `--set` would parse
    it (so a wrong key or value is the same one-line error, naming the file)."""
    import tomllib

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid {path.suffix.lstrip('.') or 'JSON'}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of key = value pairs")

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "none"
        if isinstance(value, (list, tuple)):
            return ",".join(text(v) for v in value)
        return str(value)

    try:
        return {key: parse_value(cls, key, text(value)) for key, value in data.items()}
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
