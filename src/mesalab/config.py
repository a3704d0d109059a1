"""Frozen configuration dataclasses: validated on construction, round-trip through JSON, usable under `vmap`.

A config class is declared with `@config(dynamic=(...))`. Fields named in `dynamic` become pytree leaves, so an
ensemble can stack different values of them (a per-member noise level, say) and `vmap` over the stack; every other
field is static and decides the shapes of the compiled program.

A class may declare what each field accepts in a table, `RULES = {"lr": POSITIVE, "depths": tuple_of(...), ...}`
(a plain class attribute, not a field); `@config` checks it on construction, before the class's own
`__post_init__`, which is left the rules that involve several fields. `inner_keys` turns an error raised while a
config builds the configs it is made of (a task, a model, a training recipe) into one about its own key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot work: the message names the field, the value and what is allowed.

    Raised by `require` (and the rules), it also carries them apart: `owner` (the class name), `field`, `value` and
    `allowed`, so an outer config can say which of its own keys was to blame (`inner_keys`)."""

    def __init__(self, message: str, *, owner: str | None = None, field: str | None = None, value: Any = None,
                 allowed: str | None = None) -> None:
        super().__init__(message)
        self.owner, self.field, self.value, self.allowed = owner, field, value, allowed

    def __reduce__(self):  # keyword arguments survive pickling (a Ray task's error comes back pickled)
        return (_config_error, (str(self), self.owner, self.field, self.value, self.allowed))


def _config_error(message: str, owner: Any, field: Any, value: Any, allowed: Any) -> ConfigError:
    return ConfigError(message, owner=owner, field=field, value=value, allowed=allowed)


def concrete(value: Any) -> bool:
    """True for plain Python values; validation is skipped for tracers and stacked ensemble arrays."""
    return isinstance(value, (bool, int, float, str, tuple, type(None)))


def not_allowed(owner: str, field: str, value: Any, allowed: str) -> ConfigError:
    """The one error format: "<Owner>.<field> = <value> is not allowed; expected <allowed>"."""
    return ConfigError(f"{owner}.{field} = {value!r} is not allowed; expected {allowed}", owner=owner, field=field,
                       value=value, allowed=allowed)


def require(cfg: Any, field: str, ok: bool, allowed: str) -> None:
    """Raise a `ConfigError` naming `cfg.field`, its value and the allowed values unless `ok`."""
    value = getattr(cfg, field)
    if not concrete(value):
        return
    if not ok:
        raise not_allowed(type(cfg).__name__, field, value, allowed)


# --- declarative rules: what one field accepts -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts: a test of its value, and the words that say what is allowed."""

    ok: Callable[[Any], bool]
    allowed: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.ok(value))
        except TypeError:  # e.g. a string compared with a number
            return False

    def note(self, text: str) -> Rule:
        """The same rule, with a remark after what is allowed (e.g. what 0 means)."""
        return Rule(self.ok, f"{self.allowed} ({text})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(low: int) -> Rule:
    """An integer >= low."""
    return Rule(lambda v: _is_int(v) and v >= low, f"an integer >= {low}")


def number(low: float = 0.0, high: float | None = None, *, open_low: bool = False, open_high: bool = False) -> Rule:
    """A number in the interval from low to high (closed unless told; high None: no upper end)."""
    lo_ok = (lambda v: v > low) if open_low else (lambda v: v >= low)
    hi_ok = (lambda v: True) if high is None else (lambda v: v < high) if open_high else (lambda v: v <= high)
    if high is None:
        words = f"a number {'>' if open_low else '>='} {low:g}"
    else:
        words = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    return Rule(lambda v: _is_number(v) and lo_ok(v) and hi_ok(v), words)


def one_of(*choices: Any) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def tuple_of(item: Rule, items: str, *, nonempty: bool = False) -> Rule:
    """A tuple whose every entry passes `item`; `items` names the entries in the plural ("integers >= 2")."""
    return Rule(lambda v: isinstance(v, tuple) and (len(v) > 0 or not nonempty) and all(item(x) for x in v),
                f"a {'non-empty ' if nonempty else ''}tuple of {items}" + ("" if nonempty else " (possibly empty)"))


POSITIVE = number(0.0, open_low=True)  # a number > 0
NONNEGATIVE = number(0.0)  # a number >= 0
POSITIVE_INT = integer(1)
NONNEGATIVE_INT = integer(0)
FRACTION = number(0.0, 1.0)  # a number in [0, 1]


def check_rules(cfg: Any) -> None:
    """Check every field of `cfg` that its class's RULES name; the first one that fails raises its ConfigError."""
    for field, rule in type(cfg).RULES.items():
        value = getattr(cfg, field)
        if concrete(value) and not rule(value):
            raise not_allowed(type(cfg).__name__, field, value, rule.allowed)


@contextlib.contextmanager
def inner_keys(cfg: Any, keys: dict[str, str] | None = None, *, where: str = "") -> Iterator[None]:
    """Inside the block, `cfg` builds the configs it is made of; a ConfigError about one of their fields is re-raised
    as one about `cfg`'s own key, so the user reads the name they typed.

    keys: inner field → key of cfg, either "field" or "Owner.field" (the latter wins; e.g. {"n_classes":
    "burst_classes", "TransformerConfig.clip": "act_clip"}). where: a remark on which inner config it was (said
    after what is allowed). An error about an inner field that no key names is re-raised saying which config the
    keys built."""
    keys = keys or {}
    try:
        yield
    except ConfigError as e:
        owner = type(cfg).__name__
        if e.owner is None or e.owner == owner:  # cfg's own check, or an error that names no field
            raise
        key = keys.get(f"{e.owner}.{e.field}", keys.get(e.field)) if e.field else None
        remark = f" ({where})" if where else ""
        if key is None:
            raise ConfigError(f"{owner}: these keys build a {e.owner or 'config'} that is not allowed{remark}: {e}",
                              owner=owner) from None
        raise not_allowed(owner, key, getattr(cfg, key), f"{e.allowed}{remark}") from None


def same_keys(*names: str) -> dict[str, str]:
    """{name: name}: inner fields named like the outer keys they come from."""
    return {n: n for n in names}


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
        rules = getattr(c, "RULES", None)
        if rules:
            annotated = {n for k in c.__mro__ for n in getattr(k, "__annotations__", {})}
            unknown_rules = set(rules) - annotated
            if unknown_rules:
                raise TypeError(f"{c.__name__}: RULES names {sorted(unknown_rules)}, which are not fields")
            own = c.__dict__.get("__post_init__")

            def __post_init__(self) -> None:  # the table first: the class's own checks may rely on it
                check_rules(self)
                if own is not None:
                    own(self)

            c.__post_init__ = __post_init__
        c = dataclasses.dataclass(frozen=True)(c)
        names = [f.name for f in dataclasses.fields(c)]
        unknown = set(dynamic) - set(names)
        if unknown:
            raise TypeError(f"{c.__name__}: dynamic fields {sorted(unknown)} are not fields")
        import jax  # here, not at the top: `mesalab --help` must not wait for JAX to load

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
        elif isinstance(v, np.ndarray) or (hasattr(v, "shape") and hasattr(v, "dtype")):  # numpy or jax arrays
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
    import jax

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
    """The key = value pairs of a JSON (.json), TOML (.toml) or YAML (.yaml, .yml) file, each parsed and validated as
    `--set` would parse it (so a wrong key or value is the same one-line error, naming the file)."""
    import tomllib

    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    kind = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix, "JSON")
    read = {"TOML": tomllib.loads, "YAML": yaml.safe_load, "JSON": json.loads}[kind]
    try:
        data = read(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid {kind}: {e}") from None
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
