"""The manifest as text: YAML or JSON in (refusing duplicate fields and documents too big once expanded), YAML out."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from governance.manifest.context import ManifestError
from governance.manifest.fields import describe

# A manifest is a few levels deep and at most a few hundred thousand values; YAML aliases can make a small text
# expand into billions (each alias of an alias multiplies), so the expanded document is measured before use.
MAX_DEPTH = 32
MAX_VALUES = 250_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a manifest must not lose a field that way."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key; the base class words that error
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate field {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict:
    data = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"duplicate field {key!r}")
        data[key] = value
    return data


def _load(text: str) -> object:
    if not text.lstrip().startswith("{"):
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except json.JSONDecodeError:
        try:
            return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - YAML's flow style starts with "{" too
        except yaml.YAMLError:
            pass
        raise  # neither: the JSON error says more


def parse(source: str | bytes | dict, errors: ManifestError) -> tuple[dict | None, str]:
    """The document and the sha256 of what was sent (of its canonical JSON when it came parsed)."""
    if isinstance(source, dict):
        text = json.dumps(source, sort_keys=True, separators=(",", ":"), default=str)
        return source, hashlib.sha256(text.encode()).hexdigest()
    if isinstance(source, bytes):
        raw = source
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            errors.add("manifest", "is not UTF-8 text")
            return None, hashlib.sha256(raw).hexdigest()
    checksum = hashlib.sha256(source.encode()).hexdigest()
    try:
        doc = _load(source)
    except RecursionError:
        errors.add("manifest", f"is nested too deeply (at most {MAX_DEPTH} levels)")
        return None, checksum
    except json.JSONDecodeError as e:
        errors.add("manifest", f"line {e.lineno}, column {e.colno}: {e.msg} (not valid JSON)")
        return None, checksum
    except ValueError as e:
        errors.add("manifest", str(e))
        return None, checksum
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        errors.add("manifest", f"{where}{getattr(e, 'problem', None) or e} (not valid YAML)")
        return None, checksum
    if not isinstance(doc, dict):
        errors.add("manifest", f"must be a mapping with version, organization, teams, ..., not {describe(doc)}")
        return None, checksum
    problem = _size_problem(doc)
    if problem:
        errors.add("manifest", problem)
        return None, checksum
    return doc, checksum


def _size_problem(doc: dict) -> str:
    """Why the document is too big to validate once its YAML aliases are expanded, or "" when it is not.

    Aliases share one Python object, so each container's expanded size and height are computed once (by id) and
    reused, without expanding anything; a container that holds itself (`&a [*a]`) is refused."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[object, int, bool]] = [(doc, 1, False)]
    while stack:
        value, depth, finished = stack.pop()
        if not isinstance(value, dict | list):
            continue
        key = id(value)
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        if finished:
            on_path.discard(key)
            containers = [id(c) for c in children if isinstance(c, dict | list)]
            size[key] = 1 + len(children) - len(containers) + sum(size[c] for c in containers)
            height[key] = 1 + max((height[c] for c in containers), default=0)
        elif key in on_path:
            return "contains itself through a YAML alias"
        elif key not in size:
            on_path.add(key)
            stack.append((value, depth, True))
            stack.extend((child, depth + 1, False) for child in children)
            continue
        if depth + height[key] - 1 > MAX_DEPTH:
            return f"is nested too deeply (at most {MAX_DEPTH} levels)"
        if size[key] > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values once its YAML aliases are expanded"
    return ""


class _FlowMapping(dict):
    pass


class _FlowList(list):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FlowMapping, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _is_plain(value: object) -> bool:
    return not isinstance(value, dict | list) or (isinstance(value, list) and all(map(_is_plain, value)))


def _styled(value: object, *, block: bool = False) -> object:
    """Small values of a field stay on one line ({fn: sum, window: 7d}, [mon, tue]) as in MANIFEST.md;
    sections, their objects and anything nested deeper are written as blocks."""
    if isinstance(value, list):
        if value and all(not isinstance(v, dict | list) for v in value):
            return _FlowList(value)
        return [_styled(v, block=True) for v in value]
    if isinstance(value, dict):
        styled = {k: _styled(v) for k, v in value.items()}
        return styled if block or not all(map(_is_plain, value.values())) else _FlowMapping(styled)
    return value


def dump_yaml(data: dict) -> str:
    styled = {name: _styled(value, block=True) for name, value in data.items()}
    return yaml.dump(styled, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
