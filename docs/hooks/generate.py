"""MkDocs hooks: the pages that are generated from the code and the README, so that they
cannot drift from them.

- `guides/<section>.md`: each `## ` section of README.md, as it is in the checkout (links to
  files of the checkout become their paths in code, since the site does not hold them);
- `reference/configuration.md`: every key of the config, with its type, default and bounds,
  read from the pydantic models `tradingd.Settings` is made of.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent.parent
# README section title -> guide page (the nav of mkdocs.yml names these files).
GUIDES = {
    "Quick start": "guides/quick-start.md",
    "From Python and notebooks": "guides/python.md",
    "Command line": "guides/command-line.md",
    "How a replay decides": "guides/how-a-replay-decides.md",
    "Data": "guides/data.md",
    "Configuration": "guides/configuration.md",
    "Live on Alpaca": "guides/live-on-alpaca.md",
    "See it live: the status page, HTTP endpoints, metrics, control": "guides/see-it-live.md",
    "Nothing lost, nothing twice: the journal, restarts, the audit": "guides/journal.md",
    "Walk-forward": "guides/walk-forward.md",
    "Strategies": "guides/strategies.md",
    "Sample data": "guides/sample-data.md",
    "Performance": "guides/performance.md",
    "Development": "guides/development.md",
}
_PLAIN = {
    "str": "text",
    "int": "whole number",
    "float": "number",
    "Decimal": "decimal",
    "Path": "path",
    "date": "date (YYYY-MM-DD)",
}
_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|#|mailto:)([^)]+)\)")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages to the site's files."""
    for uri, text in readme_guides().items():
        files.append(File.generated(config, uri, content=text))
    files.append(
        File.generated(config, "reference/configuration.md", content=configuration_reference())
    )
    return files


def readme_guides() -> dict[str, str]:
    """Each `## ` section of README.md as the page GUIDES names for it.

    Raises:
        ValueError: a README section has no page, or a page no section (rename both together).
    """
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    pages: dict[str, str] = {}
    for section in sections:
        title, _, body = section.partition("\n")
        if title not in GUIDES:
            raise ValueError(f"README.md section {title!r} has no page in docs/hooks/generate.py")
        body = _LINK.sub(lambda m: f"{m.group(1)} (`{m.group(2)}` in the checkout)", body)
        # A README section's own subsections become the page's sections.
        body = re.sub(r"^###", "##", body, flags=re.MULTILINE)
        pages[GUIDES[title]] = f"# {title}\n\n<!-- generated from README.md -->\n{body}"
    missing = set(GUIDES.values()) - set(pages)
    if missing:
        raise ValueError(f"pages without a README section: {sorted(missing)}")
    return pages


def configuration_reference() -> str:
    """The configuration reference: one table per section of the settings tree."""
    from daemon.settings import Settings

    lines = [
        "# Configuration reference",
        "",
        "<!-- generated from the pydantic models by docs/hooks/generate.py -->",
        "",
        "Every key a config file may set, read from the models that validate it "
        "(`tradingd.Settings` and the sections it is made of), so this page is the code's. "
        "A key path is what a YAML overlay nests and what `tradingd.load_config` takes as a "
        'keyword (`composer__method="equal"`). Unknown keys are errors. What each key means is '
        "in the [configuration guide](../guides/configuration.md).",
        "",
    ]
    _model_tables(Settings, "", lines, seen=set())
    return "\n".join(lines) + "\n"


def _model_tables(model: type[BaseModel], prefix: str, lines: list[str], seen: set[str]) -> None:
    title = prefix.rstrip(".") or "top level"
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    lines += [f"## `{title}`" if prefix else "## Top level", ""]
    if doc and not doc.startswith("!!!"):
        lines += [" ".join(doc.split()), ""]
    lines += ["| key | type | default | allowed |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _submodel(info.annotation)
        lines.append(
            f"| `{path}` | {_type_name(info.annotation)} | {_default(info)} | {_allowed(info)} |"
        )
        if sub is not None:
            nested.append((f"{path}.<id>." if _is_mapping(info.annotation) else f"{path}.", sub))
    lines.append("")
    for sub_prefix, sub in nested:
        if sub_prefix not in seen:
            seen.add(sub_prefix)
            _model_tables(sub, sub_prefix, lines, seen)


def _args(annotation: Any) -> tuple[Any, ...]:
    return typing.get_args(annotation)


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in _args(annotation))
    return origin is dict


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in _args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in _args(annotation))
    if origin is typing.Annotated:
        return _type_name(_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in _args(annotation) if a is not type(None)]
        optional = type(None) in _args(annotation)
        return " or ".join(names) + (" (optional)" if optional else "")
    if origin in (list, tuple, set, frozenset):
        return "list of " + ", ".join(_type_name(a) for a in _args(annotation) if a is not ...)
    if origin is dict:
        key, value = _args(annotation)
        return f"mapping {_type_name(key)} → {_type_name(value)}"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "section (below)"
        return _PLAIN.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    factory = info.default_factory
    value = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{_yaml(value)}`"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    if isinstance(value, dict) and not value:
        return "{}"
    return str(value)


def _allowed(info: FieldInfo) -> str:
    words = []
    for meta in info.metadata:
        if isinstance(meta, Gt):
            words.append(f"> {meta.gt}")
        elif isinstance(meta, Ge):
            words.append(f"≥ {meta.ge}")
        elif isinstance(meta, Lt):
            words.append(f"< {meta.lt}")
        elif isinstance(meta, Le):
            words.append(f"≤ {meta.le}")
        elif isinstance(meta, MinLen):
            words.append(f"length ≥ {meta.min_length}")
        elif isinstance(meta, MaxLen):
            words.append(f"length ≤ {meta.max_length}")
    return ", ".join(words)
