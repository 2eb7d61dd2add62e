"""Settings declared once: one dataclass field per setting drives the whole life of it.

A configuration section is a frozen dataclass deriving from :class:`Section`; each of
its settings is a field made by :func:`setting`, which carries the default and a
:class:`Setting` (help text, range or choices, and any special check) in the field's
metadata, while the field's annotation gives the type. From those declarations alone
this module

- loads a TOML table (:func:`load_section`), refusing unknown keys and every bad value
  with one line naming ``[section] key`` and what is allowed;
- writes the commented TOML that ``hashfed init`` leaves (:func:`toml_text`);
- renders the Markdown reference of every setting (:func:`markdown_text`).

Supported types: ``bool``, ``int``, ``float``, ``str``, ``tuple[str, ...]`` (a TOML
array of strings) and ``dict[str, int]`` (a TOML sub-table), plus nested sections.
A field that carries no :class:`Setting` and is no section (e.g. the node's home) is
not read from the file; the loader takes it from ``given``.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar

_KEY = "hashfed.setting"
_WIDTH = 88

Check = Callable[[str, Any], None]
"""Raises ValueError (naming ``where``) unless a value, or each item of a list or each key
of a table, is acceptable beyond its type and range."""

S = TypeVar("S", bound="Section")


class Section:
    """A configuration section; its docstring's first paragraph is the section's help."""

    def check(self) -> None:
        """Raises ValueError unless the settings of this section go together."""


@dataclass(frozen=True)
class Setting:
    """How one setting is documented and checked; its type and default live on the field.

    low and high bound numbers (for a table of numbers, its values); choices bound a
    string; check is a special check declared beside the setting, and allowed says in
    words what it lets through.
    """

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None
    allowed: str = ""


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    check: Check | None = None,
    allowed: str = "",
) -> Any:
    """Returns the dataclass field of one setting (a table's default is always empty)."""
    about = {_KEY: Setting(help, low, high, choices, check, allowed)}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=about)
    return dataclasses.field(default=default, metadata=about)


def about(help: str, *, check: Check | None = None, allowed: str = "") -> dict[str, Setting]:
    """Returns the metadata of a required setting (``field(metadata=about(...))``)."""
    return {_KEY: Setting(help, check=check, allowed=allowed)}


@dataclass(frozen=True)
class Declared:
    """One declared field of a section: a setting (spec set) or a nested section (cls set)."""

    name: str
    hint: Any
    spec: Setting | None
    section: type[Section] | None
    default: Any

    @property
    def required(self) -> bool:
        return self.default is MISSING


def declared(cls: type) -> list[Declared]:
    """Returns the settings and nested sections of cls, in declaration order."""
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        spec = f.metadata.get(_KEY)
        nested = hint if isinstance(hint, type) and issubclass(hint, Section) else None
        if spec is None and nested is None:
            continue
        default = f.default
        if f.default_factory is not MISSING:
            default = f.default_factory()
        result.append(Declared(f.name, hint, spec, nested, default))
    return result


# --- loading ---------------------------------------------------------------------------


def load_section(
    cls: type[S], table: Any, name: str = "", given: dict[str, Any] | None = None
) -> S:
    """Returns the section cls read from a TOML table, or raises ValueError saying what is wrong.

    name is the section's TOML name (empty at the top level); given supplies the fields
    that are not read from the file.
    """
    if not isinstance(table, dict):
        raise ValueError(f"'{name}' must be a table ([{name}])")
    items = declared(cls)
    known = [d.name for d in items]
    for key in table:
        if key not in known:
            where = f" in [{name}]" if name else ""
            raise ValueError(f"unknown setting {key!r}{where}; known: {', '.join(known)}")
    values = dict(given or {})
    for item in items:
        dotted = f"{name}.{item.name}" if name else item.name
        if item.section is not None:
            values[item.name] = load_section(item.section, table.get(item.name, {}), dotted)
            continue
        assert item.spec is not None
        where = f"[{name}] {item.name}" if name else item.name
        if item.name not in table and item.required:
            raise ValueError(f"{where} must be set: {item.spec.help}")
        value = table.get(item.name, item.default)
        values[item.name] = _parse(where, item.hint, item.spec, value)
    section = cls(**values)
    try:
        section.check()
    except ValueError as exc:
        raise ValueError(f"[{name}] {exc}" if name else str(exc)) from None
    return section


def _parse(where: str, hint: Any, spec: Setting, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where} must be {_describe(hint, spec)}, not {value!r}")
        for item in value:
            _special(spec, where, item)
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a table of {_describe(hint, spec)}, not {value!r}")
        for key, item in value.items():
            _special(spec, where, key)
            _scalar(f"{where} {key!r}", int, spec, item)
        return dict(value)
    value = _scalar(where, hint, spec, value)
    _special(spec, where, value)
    return value


def _special(spec: Setting, where: str, value: Any) -> None:
    if spec.check is not None:
        spec.check(where, value)


def _scalar(where: str, hint: Any, spec: Setting, value: Any) -> Any:
    if hint is bool:
        if type(value) is not bool:
            raise ValueError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int or hint is float:
        low, high = spec.low, spec.high
        assert low is not None and high is not None, f"{where} declares no range"
        allowed = (int,) if hint is int else (int, float)
        if type(value) not in allowed or not low <= value <= high:
            what = "an integer" if hint is int else "a number"
            raise ValueError(
                f"{where} must be {what} from {number(low)} to {number(high)}, not {value!r}"
            )
        return hint(value)
    if hint is str:
        if spec.choices and value not in spec.choices:
            raise ValueError(f"{where} must be one of {', '.join(spec.choices)}, not {value!r}")
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, not {value!r}")
        return value
    raise AssertionError(f"{where}: settings of type {hint} are not supported")


def number(value: float) -> str:
    """Returns value as TOML and people write it: 30, 0.2, 1000000."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- TOML ------------------------------------------------------------------------------


def toml_text(section: Section, title: str) -> str:
    """Returns section as commented TOML: each setting under its help and what it allows."""
    return "\n".join([f"# {title}", *_toml_lines(section, "")]) + "\n"


def _toml_lines(section: Section, name: str) -> list[str]:
    lines: list[str] = []
    tables: list[str] = []
    nested: list[str] = []
    for item in declared(type(section)):
        value = getattr(section, item.name)
        dotted = f"{name}.{item.name}" if name else item.name
        if item.section is not None:
            nested += [
                "",
                f"[{dotted}]",
                *_comment(_summary(item.section)),
                *_toml_lines(value, dotted),
            ]
            continue
        assert item.spec is not None
        comment = _comment(item.spec.help) + _comment(f"({_allowed_text(item)})")
        if isinstance(value, dict):
            entries = [f"{toml_value(k)} = {toml_value(v)}" for k, v in sorted(value.items())]
            tables += [*comment, f"[{dotted}]", *entries]
        else:
            lines += [*comment, f"{item.name} = {toml_value(value)}"]
    return lines + tables + nested


def toml_value(value: Any) -> str:
    """Returns value written as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise AssertionError(f"no TOML form for {value!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, initial_indent="# ", subsequent_indent="# ")


def _summary(cls: type) -> str:
    return " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())


def _allowed_text(item: Declared) -> str:
    assert item.spec is not None
    default = "required" if item.required else f"default {_default_text(item)}"
    return f"{_describe(item.hint, item.spec)}; {default}"


def _default_text(item: Declared) -> str:
    if item.default in ("", (), {}):
        return "empty"
    return toml_value(item.default)


def _describe(hint: Any, spec: Setting) -> str:
    """Returns what a setting allows, in words: 'an integer from 0 to 65535'."""
    if typing.get_origin(hint) is tuple:
        return f"a list of {spec.allowed or 'strings'}"
    if typing.get_origin(hint) is dict:
        return f"{spec.allowed} = {_describe(int, spec)}"
    if hint is bool:
        return "true or false"
    if hint is int or hint is float:
        what = "an integer" if hint is int else "a number"
        return f"{what} from {number(spec.low or 0)} to {number(spec.high or 0)}"
    if spec.choices:
        return "one of " + ", ".join(spec.choices)
    return spec.allowed or "a string"


# --- Markdown --------------------------------------------------------------------------


def markdown_text(top: type[Section], title: str, intro: str) -> str:
    """Returns the Markdown reference of every setting of top and its sections."""
    lines = [f"# {title}", "", intro.strip(), ""]
    lines += _markdown_section(top, "", "Top level")
    return "\n".join(lines).rstrip() + "\n"


def _markdown_section(cls: type[Section], name: str, heading: str) -> list[str]:
    lines = [f"## {heading}", "", _summary(cls), ""]
    rows = ["| Setting | Default | Allowed | Meaning |", "|---|---|---|---|"]
    nested: list[str] = []
    for item in declared(cls):
        dotted = f"{name}.{item.name}" if name else item.name
        if item.section is not None:
            nested += _markdown_section(item.section, dotted, f"`[{dotted}]`")
            continue
        assert item.spec is not None
        default = "required" if item.required else _markdown_default(item.default)
        cells = [f"`{item.name}`", default]
        cells += [_describe(item.hint, item.spec), item.spec.help]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines + rows + [""] + nested


def _markdown_default(default: Any) -> str:
    return "empty table" if isinstance(default, dict) else f"`{toml_value(default)}`"
