"""The machinery behind the settings table: value kinds, ``setting()`` rows and the loader.

Nothing here knows a particular variable; the table itself is :class:`kontext.config.settings.Settings`.

A *kind* turns the (stripped, non-empty) text of one variable into a value, or raises :class:`Invalid`
with a problem sentence. Problem sentences never contain the value: they are shown as
``VARIABLE: problem`` and the value may be a secret.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, cast, overload
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
D = TypeVar("D")

_META = "kontext.setting"
_ENV_NAME_RE = re.compile(r"[A-Z][A-Z0-9_]*")
_INT_RE = re.compile(r"[+-]?\d+", re.ASCII)
_NUMBER_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


class ConfigError(Exception):
    """A setting is missing or malformed; ``str()`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class Invalid(Exception):
    """Raised by :meth:`Kind.parse`; ``problem`` follows ``VARIABLE: `` and never holds the value."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _num(x: float) -> str:
    """A bound or default as a person writes it: ``20`` not ``20.0``, ``0.25``, ``604800``."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


class Kind(ABC, Generic[T_co]):
    """How the text of one variable becomes a value of type ``T_co``."""

    @abstractmethod
    def parse(self, raw: str) -> T_co:
        """``raw`` is stripped and non-empty; raise :class:`Invalid` when it is not acceptable."""

    @abstractmethod
    def describe(self) -> str:
        """What is accepted, for the README and ``.env.example`` (ASCII, no value of a secret)."""

    def render(self, value: object) -> str:
        """``value`` written as it would be in ``.env`` (so that ``parse(render(v)) == v``)."""
        return str(value)


@dataclass(frozen=True)
class Bool(Kind[bool]):
    """``1/true/yes/on`` or ``0/false/no/off``, any case."""

    def parse(self, raw: str) -> bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise Invalid("must be true or false")

    def describe(self) -> str:
        return "true/false"

    def render(self, value: object) -> str:
        return "true" if value else "false"


def _parse_int(raw: str, lo: int, hi: int, problem: str) -> int:
    if not _INT_RE.fullmatch(raw):
        raise Invalid(problem)
    try:
        value = int(raw)
    except ValueError:  # more digits than Python converts
        raise Invalid(problem) from None
    if not lo <= value <= hi:
        raise Invalid(f"must be between {lo} and {hi}")
    return value


def _int_range(lo: int, hi: int) -> str:
    return f"{lo}..{hi}" if hi < 2**53 else f">= {lo}"


@dataclass(frozen=True)
class Int(Kind[int]):
    """A decimal integer (ASCII digits, optional sign, no ``_``) in ``lo..hi``."""

    lo: int
    hi: int

    def parse(self, raw: str) -> int:
        bounds = f"between {self.lo} and {self.hi}" if self.hi < 2**53 else f">= {self.lo}"
        return _parse_int(raw, self.lo, self.hi, f"must be an integer {bounds}")

    def describe(self) -> str:
        return f"integer {_int_range(self.lo, self.hi)}"


@dataclass(frozen=True)
class Float(Kind[float]):
    """A decimal number (``1``, ``0.5``, ``.5``, ``2e3``; not ``nan``, ``inf`` or ``1_0``) in ``lo..hi``."""

    lo: float
    hi: float

    def parse(self, raw: str) -> float:
        if not _NUMBER_RE.fullmatch(raw):
            raise Invalid(f"must be a number between {_num(self.lo)} and {_num(self.hi)}")
        value = float(raw)  # cannot fail after the pattern; 1e999 becomes inf, refused below
        if not self.lo <= value <= self.hi:
            raise Invalid(f"must be between {_num(self.lo)} and {_num(self.hi)}")
        return value

    def describe(self) -> str:
        return f"number {_num(self.lo)}..{_num(self.hi)}"

    def render(self, value: object) -> str:
        return _num(cast(float, value))


@dataclass(frozen=True)
class IntList(Kind[tuple[int, ...]]):
    """Comma-separated integers in ``lo..hi`` (``0,1`` or ``0, 1``), as a tuple."""

    lo: int
    hi: int
    unique: bool = False

    def parse(self, raw: str) -> tuple[int, ...]:
        problem = f"must be a comma-separated list of integers {_int_range(self.lo, self.hi)}"
        values = tuple(_parse_int(part.strip(), self.lo, self.hi, problem) for part in raw.split(","))
        if self.unique and len(set(values)) != len(values):
            raise Invalid("must not list a number twice")
        return values

    def describe(self) -> str:
        return f"comma-separated integers {_int_range(self.lo, self.hi)}"

    def render(self, value: object) -> str:
        return ",".join(str(v) for v in cast(tuple[int, ...], value))


@dataclass(frozen=True)
class Str(Kind[str]):
    """Any text (stripped)."""

    def parse(self, raw: str) -> str:
        return raw

    def describe(self) -> str:
        return "text"


@dataclass(frozen=True)
class Pattern(Kind[str]):
    """Text that must match ``regex`` entirely, after removing an optional ``strip_prefix`` (any case)."""

    regex: str
    what: str  # for the docs: "Discord bot token"
    problem: str = "malformed"
    strip_prefix: str = ""

    def parse(self, raw: str) -> str:
        if self.strip_prefix and raw.lower().startswith(self.strip_prefix.lower()):
            raw = raw[len(self.strip_prefix) :].strip()
        if not re.fullmatch(self.regex, raw):
            raise Invalid(self.problem)
        return raw

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class Choice(Kind[str]):
    """One of ``choices``; ``case`` folds the input first (``lower``/``upper``) or not (``exact``)."""

    choices: tuple[str, ...]
    case: Literal["exact", "lower", "upper"] = "exact"

    def parse(self, raw: str) -> str:
        value = raw.lower() if self.case == "lower" else raw.upper() if self.case == "upper" else raw
        if value not in self.choices:
            raise Invalid(f"must be one of: {', '.join(self.choices)}")
        return value

    def describe(self) -> str:
        return ", ".join(self.choices)


@dataclass(frozen=True)
class Url(Kind[str]):
    """An ASCII URL with one of ``schemes``, a host and a valid port.

    ``path="strip"`` (API roots) removes trailing ``/``; ``path="keep"`` keeps the URL as given except
    that a bare host gets the path ``/``.
    """

    schemes: tuple[str, ...] = ("https", "http")
    path: Literal["strip", "keep"] = "strip"

    def parse(self, raw: str) -> str:
        problem = f"must be a URL starting with {' or '.join(s + '://' for s in self.schemes)}"
        if not raw.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
            raise Invalid(problem + " (ASCII, no spaces)")
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
        except ValueError:
            raise Invalid(problem + " with a valid host and port") from None
        if parts.scheme not in self.schemes or not parts.hostname:
            raise Invalid(problem)
        if self.path == "strip":
            return raw.rstrip("/")
        return raw if parts.path else urlunsplit(parts._replace(path="/"))

    def describe(self) -> str:
        return "URL (" + ", ".join(s + "://" for s in self.schemes) + ")"


@dataclass(frozen=True)
class DatabaseUrl(Kind[str]):
    """A PostgreSQL connection URL: ``postgresql://user:password@host:port/database``; the host may be
    given as ``?host=/socket/dir`` instead."""

    def parse(self, raw: str) -> str:
        problem = "must be a URL like postgresql://user:password@host:5432/database"
        if not raw.isascii() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
            raise Invalid(problem + " (ASCII, no spaces)")
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
        except ValueError:
            raise Invalid(problem + " with a valid host and port") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise Invalid(problem)
        if not parts.hostname and "host=" not in parts.query:
            raise Invalid(problem + " (no host)")
        return raw

    def describe(self) -> str:
        return "URL (postgresql://)"


@dataclass(frozen=True)
class Dir(Kind[Path]):
    """A directory path (anything but a NUL character)."""

    def parse(self, raw: str) -> Path:
        if "\x00" in raw:
            raise Invalid("must be a directory path")
        return Path(raw)

    def describe(self) -> str:
        return "directory path"


@dataclass(frozen=True)
class Group:
    """A heading of the README table and of ``.env.example``."""

    title: str
    note: str = ""


@dataclass(frozen=True)
class Spec:
    """One row of the table: everything about one variable except its attribute name (``attr``)."""

    env: str
    kind: Kind[object]
    default: object  # None for an optional setting; ignored when ``required``
    required: str | None  # the hint after "missing" for a required variable; None = has a default
    secret: bool
    help: str
    group: Group
    example: str | None = None
    attr: str = ""

    def parse(self, raw: str) -> object:
        """``raw`` (stripped, non-empty) as a value, or :class:`ConfigError` naming the variable."""
        try:
            return self.kind.parse(raw)
        except Invalid as exc:
            raise ConfigError(self.env, exc.problem) from None
        except Exception:  # noqa: BLE001 - a kind's bug must not leak the value through a library's message
            raise ConfigError(self.env, f"invalid value (expected {self.kind.describe()})") from None


@overload
def setting(
    env: str,
    kind: Kind[T],
    *,
    required: str,
    help: str,
    group: Group,
    secret: bool = False,
    example: str | None = None,
) -> T: ...


@overload
def setting(
    env: str,
    kind: Kind[T],
    *,
    default: T,
    help: str,
    group: Group,
    secret: bool = False,
    example: str | None = None,
) -> T: ...


def setting(
    env: str,
    kind: Kind[object],
    *,
    default: object = dataclasses.MISSING,
    required: str | None = None,
    help: str,
    group: Group,
    secret: bool = False,
    example: str | None = None,
) -> Any:
    """One row of the settings table, used as the default of a :class:`Settings` field.

    Give exactly one of ``default`` (``None`` makes the setting optional) and ``required`` (the hint
    shown after "missing"). ``secret`` keeps the value out of ``repr`` and the docs.
    """
    if not _ENV_NAME_RE.fullmatch(env):
        raise TypeError(f"setting {env!r}: the variable name must be UPPER_SNAKE_CASE")
    if (default is dataclasses.MISSING) == (required is None):
        raise TypeError(f"setting {env}: give exactly one of default= and required=")
    spec = Spec(
        env=env,
        kind=kind,
        default=None if default is dataclasses.MISSING else default,
        required=required,
        secret=secret,
        help=help,
        group=group,
        example=example,
    )
    if required is not None:
        return dataclasses.field(repr=not secret, metadata={_META: spec})
    return dataclasses.field(default=default, repr=not secret, metadata={_META: spec})


def specs(cls: type[Any]) -> tuple[Spec, ...]:
    """The rows of a settings dataclass, in table order, each with its attribute name."""
    return tuple(
        dataclasses.replace(f.metadata[_META], attr=f.name)
        for f in dataclasses.fields(cls)
        if _META in f.metadata
    )


def load(cls: type[D], env: Mapping[str, str]) -> D:
    """Build ``cls`` from ``env``; raise :class:`ConfigError` on the first bad variable, in table order.

    An unset, empty or blank variable means "use the default"; values are stripped.
    """
    values: dict[str, object] = {}
    for spec in specs(cls):
        raw = env.get(spec.env)
        if raw is None or not raw.strip():
            if spec.required is not None:
                raise ConfigError(spec.env, f"missing ({spec.required})")
            continue
        values[spec.attr] = spec.parse(raw.strip())
    return cast(Callable[..., D], cls)(**values)


def secret_values(settings: object) -> list[str]:
    """The values of every secret setting that is set (what the log filter scrubs)."""
    values = (getattr(settings, spec.attr) for spec in specs(type(settings)) if spec.secret)
    return [value for value in values if isinstance(value, str) and value]
