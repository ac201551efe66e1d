"""The one way this project reads settings from the environment.

Every setting is declared once, as a :class:`Setting`: the variables it reads
(most specific first), the parser for their text, and the default. Values are
resolved in a documented order: explicit argument, then environment, then
default.

Errors come in two tiers here:

* an explicit argument that is invalid raises ``ValueError`` at once;
* a bad environment value logs one warning that names the variable, the value
  and the value used instead, and loading carries on; a service never fails to
  start because of a typo in a telemetry variable.

Parsers raise :class:`InvalidValue`. When part of a value is usable (one bad
entry in a comma list) the parser hands back what it could salvage as
``fallback``, and that is used instead of the default.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "InvalidValue",
    "Setting",
    "SettingsReader",
    "boolean",
    "choice",
    "choices_list",
    "encode_http_headers",
    "file_path",
    "host",
    "http_headers",
    "key_values",
    "non_negative_float",
    "non_negative_int",
    "optional_limit",
    "port",
    "positive_float",
    "positive_int",
    "ratio",
    "text",
    "url",
    "url_patterns",
]

logger = logging.getLogger("ha_agent_tracing")

T = TypeVar("T")

_MISSING: Any = object()


class InvalidValue(ValueError):
    """A value a parser rejects; the message says what was expected."""

    def __init__(self, message: str, fallback: Any = _MISSING) -> None:
        super().__init__(message)
        self.fallback = fallback


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: the variables it reads, their parser and its default."""

    name: str
    env: tuple[str, ...]
    parse: Callable[[str], T]
    default: T
    doc: str = ""


@dataclass
class SettingsReader:
    """Resolves settings against one environment and one set of overrides.

    One reader serves one load of a settings table, so each bad variable is
    reported once per load however many settings read it.
    """

    environ: Mapping[str, str]
    overrides: Mapping[str, Any] = field(default_factory=dict[str, Any])
    warned: set[str] = field(default_factory=set[str])

    def get(self, setting: Setting[T]) -> T:
        """Return the setting's value: override, then environment, then default."""
        if setting.name in self.overrides:
            return self._from_argument(setting, self.overrides[setting.name])
        rejected: list[tuple[str, str, InvalidValue]] = []
        value: T = setting.default
        for var in setting.env:
            raw = self.environ.get(var)
            if raw is None or not raw.strip():
                continue
            try:
                value = setting.parse(raw.strip())
                break
            except InvalidValue as exc:
                rejected.append((var, raw, exc))
                if exc.fallback is not _MISSING and exc.fallback not in ("", (), {}):
                    value = exc.fallback  # part of it was usable
                    break
        for var, raw, exc in rejected:
            self._warn(var, raw, exc, value)
        return value

    def sanitize(self, setting: Setting[Any], environ: MutableMapping[str, str]) -> None:
        """Rewrite bad values of ``setting`` in ``environ`` (salvage, else remove), warning once each.

        For variables that other code parses on its own and raises on, such
        as the SDK at import time: they must be valid before it reads them.
        """
        for var in setting.env:
            raw = environ.get(var)
            if raw is None or not raw.strip():
                continue
            try:
                setting.parse(raw.strip())
            except InvalidValue as exc:
                if isinstance(exc.fallback, str) and exc.fallback:
                    environ[var] = used = exc.fallback
                else:
                    del environ[var]
                    used = setting.default
                self._warn(var, raw, exc, used)

    def _from_argument(self, setting: Setting[T], value: Any) -> T:
        if isinstance(value, bool) and setting.parse is not boolean:
            value = str(value).lower()  # e.g. a capture mode, where `true` is one of the words
        if not isinstance(value, str):
            return value  # type: ignore[no-any-return]
        try:
            return setting.parse(value.strip())
        except InvalidValue as exc:
            raise ValueError(f"{setting.name}={value!r} is not valid: {exc}") from None

    def _warn(self, var: str, raw: str, exc: InvalidValue, used: object) -> None:
        if var in self.warned:
            return
        self.warned.add(var)
        logger.warning(
            "%s=%r is not valid (%s); using %s instead",
            var,
            raw,
            exc,
            _describe(used),
        )


def _describe(value: object) -> str:
    if value is None:
        return "no value"
    if isinstance(value, list | tuple) and not value:
        return "none"
    return repr(value)


# ---------------------------------------------------------------- parsers


def text(raw: str) -> str:
    """Any non-empty text."""
    return raw


def boolean(raw: str) -> bool:
    """``true`` or ``false`` in any case, as the OpenTelemetry spec defines them."""
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise InvalidValue("expected true or false")


def positive_int(raw: str) -> int:
    """A whole number greater than zero."""
    try:
        value = int(raw)
    except ValueError:
        raise InvalidValue("expected a whole number greater than 0") from None
    if value <= 0:
        raise InvalidValue("expected a whole number greater than 0")
    return value


def non_negative_int(raw: str) -> int:
    """A whole number, zero or more."""
    try:
        value = int(raw)
    except ValueError:
        raise InvalidValue("expected a whole number, 0 or more") from None
    if value < 0:
        raise InvalidValue("expected a whole number, 0 or more")
    return value


def port(raw: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    try:
        value = int(raw)
    except ValueError:
        raise InvalidValue("expected a port number from 0 to 65535") from None
    if not 0 <= value <= 65535:
        raise InvalidValue("expected a port number from 0 to 65535")
    return value


_HOST = re.compile(r"^[A-Za-z0-9._:\-]+$")


def host(raw: str) -> str:
    """A host name or an IPv4/IPv6 address to listen on."""
    if not _HOST.match(raw):
        raise InvalidValue("expected a host name or an IP address such as 127.0.0.1 or 0.0.0.0")
    return raw


def file_path(raw: str) -> str:
    """A file system path (read later; a missing file is reported then)."""
    if "\x00" in raw:
        raise InvalidValue("a path cannot contain a NUL character")
    return raw


def optional_limit(raw: str) -> int | None:
    """A limit: a whole number, 0 or more; ``unset`` means no limit."""
    if raw.lower() == "unset":
        return None
    return non_negative_int(raw)


def positive_float(raw: str) -> float:
    """A finite number greater than zero."""
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue("expected a number greater than 0") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidValue("expected a number greater than 0")
    return value


def non_negative_float(raw: str) -> float:
    """A finite number, 0 or more."""
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue("expected a number of 0 or more") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidValue("expected a number of 0 or more")
    return value


def ratio(raw: str) -> float:
    """A probability between 0 and 1 inclusive."""
    try:
        value = float(raw)
    except ValueError:
        raise InvalidValue("expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidValue("expected a number from 0 to 1")
    return value


def choice(*options: str, aliases: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """One of ``options``, case-insensitive; ``aliases`` map to an option with a warning."""
    known = {option.lower(): option for option in options}
    mapped = {key.lower(): value for key, value in (aliases or {}).items()}

    def parse(raw: str) -> str:
        lowered = raw.lower()
        if lowered in known:
            return known[lowered]
        if lowered in mapped:
            raise InvalidValue("not supported here", fallback=mapped[lowered])
        raise InvalidValue("expected one of " + ", ".join(options))

    return parse


def choices_list(*options: str) -> Callable[[str], tuple[str, ...]]:
    """A comma list of ``options``; unknown entries are dropped with a warning."""

    def parse(raw: str) -> tuple[str, ...]:
        entries = [entry.strip().lower() for entry in raw.split(",") if entry.strip()]
        good = tuple(dict.fromkeys(entry for entry in entries if entry in options))
        bad = [entry for entry in entries if entry not in options]
        if bad:
            raise InvalidValue(
                f"unknown {', '.join(map(repr, bad))}; expected a comma list of {', '.join(options)}",
                fallback=good,
            )
        return good

    return parse


def names(raw: str) -> tuple[str, ...]:
    """A comma list of names, lower-cased, blanks and repeats dropped; never invalid."""
    return tuple(dict.fromkeys(entry.strip().lower() for entry in raw.split(",") if entry.strip()))


def _pairs(raw: str, accept: Callable[[str, str], bool], expected: str) -> dict[str, str]:
    """Comma-separated ``key=value`` entries that ``accept(key, decoded value)``; the rest rejected."""
    result: dict[str, str] = {}
    bad: list[str] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        decoded = unquote(value.strip())
        if not sep or not accept(key.strip(), decoded):
            bad.append(item.strip())
            continue
        result[key.strip()] = decoded
    if bad:
        raise InvalidValue(f"entries {', '.join(map(repr, bad))} are not {expected}", fallback=result)
    return result


def key_values(raw: str) -> dict[str, str]:
    """``key=value`` pairs separated by commas, values percent-decoded (W3C Baggage style)."""
    return _pairs(raw, lambda key, _: bool(key), "key=value")


_TOKEN = re.compile(r"^[!#$&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110 token, no %)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def http_headers(raw: str) -> dict[str, str]:
    """``name=value`` HTTP headers separated by commas, values percent-decoded (the OTLP exporter format).

    A name must be an HTTP token; a value may not hold control characters (a
    decoded line break would start another header).
    """
    return _pairs(
        raw,
        lambda name, value: bool(_TOKEN.match(name)) and not _CONTROL.search(value),
        "name=value with an HTTP header name",
    )


def encode_http_headers(headers: Mapping[str, str]) -> str:
    """The inverse of :func:`http_headers`: every value percent-encoded."""
    return ",".join(f"{name}={quote(value, safe='')}" for name, value in headers.items())


def url_patterns(raw: str) -> str:
    """A comma list of regular expressions (URL patterns); ones that do not compile are dropped."""
    good: list[str] = []
    bad: list[str] = []
    for pattern in (part.strip() for part in raw.split(",")):
        if not pattern:
            continue
        try:
            re.compile(pattern)
        except re.error:
            bad.append(pattern)
        else:
            good.append(pattern)
    if bad:
        raise InvalidValue(
            f"{', '.join(map(repr, bad))} {'is not a' if len(bad) == 1 else 'are not'} regular expression"
            f"{'' if len(bad) == 1 else 's'}",
            fallback=",".join(good),
        )
    return ",".join(good)


def url(raw: str) -> str:
    """An absolute ``http`` or ``https`` URL with a host."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidValue("expected an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidValue("expected an http:// or https:// URL with a host")
    return raw


def _as_typed(value: object) -> str:
    """A default as a user would type it in the environment."""
    if value is None or value in ({}, "", ()):
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple):
        return f"`{','.join(map(str, value))}`"  # pyright: ignore[reportUnknownArgumentType]
    return f"`{value}`"


def documented(settings: Iterable[Setting[Any]]) -> list[tuple[str, str, str]]:
    """Rows of (variables, default, meaning) for the README's settings table."""
    return [(" / ".join(s.env), _as_typed(s.default), s.doc) for s in settings]
