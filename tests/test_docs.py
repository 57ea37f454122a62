"""The documentation stays true to the code and to itself.

- docs/configuration.md's settings table is the one rendered from ``app.config.Settings`` (the
  environment variables are the service's interface: a setting added or changed there must show
  up in the docs). To rewrite the table after changing Settings: ``.venv/bin/python tests/test_docs.py``.
- Every relative link in README.md, docs/*.md and models/fashion-cnn/CHANGELOG.md points to a file
  that exists (anchors are not checked).
- README.md stays a front door: at most 120 lines, and its first commands are ``make serve`` and
  ``make test``.
"""

from __future__ import annotations

import re
import types
import typing
from enum import Enum
from pathlib import Path

from app.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[1]
CONFIGURATION = REPO / "docs" / "configuration.md"
TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"
README_MAX_LINES = 120
LINKED_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "models/fashion-cnn/CHANGELOG.md"]
KIB = 1024


# --- the settings table -----------------------------------------------------------------------


def _type_name(annotation: object) -> str:
    """A reader's name for a field's type: what may be written into the variable."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " / ".join(f"`{value}`" for value in args)
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        return " / ".join(_type_name(arg) for arg in present) + (", optional" if len(present) < len(args) else "")
    if origin is list:
        return "comma-separated list"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " / ".join(f"`{member.value}`" for member in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[object]) -> str:
    """The field's numeric constraints (pydantic keeps them as annotated_types objects)."""
    parts = []
    for constraint in metadata:
        for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(constraint, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def _default(name: str, field: typing.Any) -> str:
    """The default as it would be written into the variable; byte sizes also in KiB/MiB."""
    if field.default_factory is not None:
        value = field.default_factory()
        return "empty" if not value else f"`{','.join(map(str, value))}`"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        # Absolute defaults point into this checkout; show them relative to the repository.
        return (
            f"`{value.relative_to(REPO).as_posix() if value.is_absolute() and value.is_relative_to(REPO) else value}`"
        )
    if name.endswith("_bytes") and isinstance(value, int) and value >= KIB and value % KIB == 0:
        unit, size = ("MiB", value // KIB**2) if value % KIB**2 == 0 else ("KiB", value // KIB)
        return f"`{value}` ({size} {unit})"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_settings_table() -> str:
    """One Markdown row per field of Settings, in declaration order: variable, type, default, description."""
    lines = ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        kind = _type_name(field.annotation)
        bounds = _bounds(field.metadata)
        if bounds:
            kind = f"{kind} ({bounds})"
        row = [f"`{ENV_PREFIX}{name.upper()}`", kind, _default(name, field), field.description or ""]
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


def _documented_table(text: str) -> str:
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[start:end].strip()


def write_settings_table(path: Path = CONFIGURATION) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    path.write_text(text[:start] + "\n" + render_settings_table() + "\n" + text[end:], encoding="utf-8")


def test_settings_table_is_generated_from_settings() -> None:
    expected = render_settings_table()
    documented = _documented_table(CONFIGURATION.read_text(encoding="utf-8"))
    assert documented == expected, (
        f"docs/configuration.md's settings table differs from app.config.Settings. Rewrite it with "
        f"`.venv/bin/python tests/test_docs.py`, or paste this between {TABLE_START} and {TABLE_END}:\n\n"
        f"{expected}\n"
    )


def test_every_setting_is_in_the_table() -> None:
    # Guards the renderer itself: one row per field, each under its environment variable.
    table = render_settings_table()
    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in table


# --- links ------------------------------------------------------------------------------------

FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def relative_links(text: str) -> list[str]:
    """Link targets that name a file in this repository (code spans and blocks are not links)."""
    prose = INLINE_CODE.sub("", FENCED_CODE.sub("", text))
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not EXTERNAL.match(t) and not t.startswith("#")]


def test_relative_links_point_to_existing_files() -> None:
    broken = []
    for doc in LINKED_DOCS:
        assert doc.is_file(), f"{doc.relative_to(REPO)} is missing"
        for target in relative_links(doc.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0].split("?", 1)[0]
            if not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(REPO)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_link_finder_sees_links_and_skips_code() -> None:
    text = (
        "[a](docs/a.md#x) ![b](img.png) [c](https://e.org) [d](#top) `[e](no.md)`\n```\n[f](no.md)\n```\n[g]: ref.md\n"
    )
    assert relative_links(text) == ["docs/a.md#x", "img.png", "ref.md"]


# --- the README as a front door -----------------------------------------------------------------


def test_readme_is_short_and_starts_with_serve_and_test() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    first_block = FENCED_CODE.search(text)
    assert first_block is not None, "README.md has no command block"
    commands = [
        line.strip()
        for line in first_block.group(0).splitlines()[1:-1]
        if line.strip() and not line.strip().startswith("#")
    ]
    assert [c.split("#")[0].split() for c in commands[:2]] == [["make", "serve"], ["make", "test"]]


if __name__ == "__main__":
    write_settings_table()
    print(f"rewrote the settings table in {CONFIGURATION.relative_to(REPO)}")
