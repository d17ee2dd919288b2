"""The one registry helper: name -> object, filled by a decorator, read by name.

Models, datasets, augmentations, mixing methods and frontends each keep one
:class:`Registry`; the CLI lists them with :meth:`Registry.names`. A name looked up that
is not there raises :class:`~audioclf.errors.ConfigError` listing the known names (and the
closest one), and :func:`validate_options` checks a config's options against a builder's
keyword-only parameters with pydantic, so a wrong option is named with the allowed ones.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from audioclf.errors import ConfigError

__all__ = ["Registry", "check_probability", "validate_options"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object, in registration order, with optional metadata per name.

    ``kind`` names the entries in messages ("model", "waveform augmentation", ...).
    ``loader`` is called once before the first read (e.g. to import the modules that
    register entries), so building the registry imports nothing at ``import`` time.
    """

    def __init__(self, kind: str, loader: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._loader = loader
        self._loaded = loader is None

    def add(self, name: str, obj: T, **meta: Any) -> T:
        """Register ``obj`` under ``name``; re-registering the same object is a no-op (a
        module imported twice), another object under a taken name is a programming error."""
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        self._meta[name] = dict(meta)
        return obj

    def copy(self) -> Registry[T]:
        """A registry of the same kind holding the same entries (loaded first), to add to
        without changing this one: e.g. a test that registers a name of its own."""
        self._load()
        other: Registry[T] = Registry(self.kind)
        other._entries = dict(self._entries)
        other._meta = {k: dict(v) for k, v in self._meta.items()}
        return other

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` (the default name is ``obj.__name__``)."""

        def wrap(obj: T) -> T:
            return self.add(name or obj.__name__, obj, **meta)

        return wrap

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader()

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        self._load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return list(self._entries.items())

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def unknown_message(self, name: str) -> str:
        """``unknown <kind> 'x'; did you mean 'y'? known: ...``."""
        self._load()
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self._entries) or "(none)"
        return f"unknown {self.kind} {name!r}{hint} known: {known}"

    def get(self, name: str) -> T:
        """The object registered as ``name``; :class:`ConfigError` if there is none."""
        self._load()
        if name not in self._entries:
            raise ConfigError(self.unknown_message(name))
        return self._entries[name]

    def check_names(self, names: Any) -> None:
        """Raise :class:`ConfigError` naming every one of ``names`` that is not registered."""
        self._load()
        unknown = sorted(set(names) - set(self._entries))
        if len(unknown) == 1:
            raise ConfigError(self.unknown_message(unknown[0]))
        if unknown:
            raise ConfigError(
                f"unknown {self.kind}s {', '.join(map(repr, unknown))}; known: {', '.join(self._entries)}"
            )


def validate_options(kind: str, name: str, builder: Callable[..., Any], options: Mapping[str, Any],
                     *, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``options`` against ``builder``'s keyword-only parameters (and the names in
    ``extra``, which the caller consumes) with pydantic, and return them validated.

    Unknown or missing options and values of the wrong type raise :class:`ConfigError`
    naming ``kind`` ``name``, the option and the allowed ones.
    """
    from pydantic import ConfigDict, ValidationError, create_model

    params = {n: p for n, p in inspect.signature(builder).parameters.items() if p.kind is p.KEYWORD_ONLY}
    allowed = [*extra, *sorted(params)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{kind} {name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                          f"allowed options: {', '.join(allowed)}")
    missing = sorted(n for n, p in params.items() if p.default is p.empty and n not in options)
    if missing:
        raise ConfigError(f"{kind} {name!r}: missing required option(s) {', '.join(missing)}")
    hints = _hints(builder)
    fields = {n: (hints.get(n, Any), ... if p.default is p.empty else p.default) for n, p in params.items()}
    schema = create_model(f"{name}_options", __config__=ConfigDict(arbitrary_types_allowed=True), **fields)
    given = {k: v for k, v in options.items() if k in params}
    try:
        checked = schema.model_validate(given)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{kind} {name!r}: option {where}: {first['msg']} (got {first.get('input')!r})") from None
    out = {k: getattr(checked, k) for k in given}
    out.update({k: v for k, v in options.items() if k in extra})
    return out


def check_probability(kind: str, name: str, p: Any) -> float:
    """``p`` as a float in [0, 1]; :class:`ConfigError` naming ``kind`` ``name`` otherwise."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ConfigError(f"{kind} {name!r}: p must be a number in [0, 1], got {p!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{kind} {name!r}: p must be in [0, 1], got {value}")
    return value


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve is left unchecked
        return {}
