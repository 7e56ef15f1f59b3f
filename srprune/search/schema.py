"""Reading YAML configs and checking their values: one declarative rule per key, checked before any work.

Why one home: `srprune run` configs and `srprune supernet` configs are read the same way (UTF-8 text,
no duplicate keys, a mapping at the top), and every value, whatever key it sits under, is checked the
same way (type, range, finiteness): a NaN learning rate or an `rpc: 12345` must be refused with the
key's name before the first stage starts, not fail an hour later. srprune.search.config holds the
table of `srprune run` keys (RUN_RULES) and srprune.search.supernet_stage the supernet's (TRAIN_RULES).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from srprune.errors import InputError


@dataclass(frozen=True)
class Num:
    """A finite number (an integer if `integer`) in [low, high]; `above` makes low exclusive; None allowed if `optional`."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    above: bool = False  # low itself is not allowed
    below: bool = False  # high itself is not allowed
    optional: bool = False

    def check(self, where: str, v: Any) -> None:
        """Raise InputError naming `where` unless `v` fits."""
        if v is None and self.optional:
            return
        kind = "an integer" if self.integer else "a number"
        ok = not isinstance(v, bool) and isinstance(v, int if self.integer else (int, float))
        ok = ok and math.isfinite(v)
        ok = ok and (self.low is None or (v > self.low if self.above else v >= self.low))
        ok = ok and (self.high is None or (v < self.high if self.below else v <= self.high))
        if not ok:
            raise InputError(f"{where} must be {kind}{self._range()}, got {v!r}")

    def _range(self) -> str:
        low = None if self.low is None else f"{'>' if self.above else '>='} {self.low:g}"
        if low and self.high is not None:
            return f" in {'(' if self.above else '['}{self.low:g}, {self.high:g}{')' if self.below else ']'}"
        return f" {low}" if low else (f" <= {self.high:g}" if self.high is not None else "")


@dataclass(frozen=True)
class Text:
    """A string (one of `choices` if given); None allowed if `optional`."""

    choices: tuple[str, ...] = ()
    optional: bool = False
    why: str = ""  # why the choices are what they are, added to the message

    def check(self, where: str, v: Any) -> None:
        """Raise InputError naming `where` unless `v` fits."""
        if v is None and self.optional:
            return
        if self.choices and v not in self.choices:
            why = f" ({self.why})" if self.why else ""
            raise InputError(f"{where} must be one of {', '.join(self.choices)}, got {v!r}{why}")
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"{where} must be a non-empty string, got {v!r}")


@dataclass(frozen=True)
class ListOf:
    """A non-empty list whose items all fit `item` (a bare item is accepted as a list of one if `single`)."""

    item: Num | Text | ListOf
    length: int | None = None
    single: bool = False

    def check(self, where: str, v: Any) -> None:
        """Raise InputError naming `where` unless `v` fits."""
        if self.single and not isinstance(v, list):
            v = [v]
        if not isinstance(v, list) or not v or (self.length is not None and len(v) != self.length):
            size = f" of {self.length}" if self.length is not None else ""
            raise InputError(f"{where} must be a non-empty list{size}, got {v!r}")
        for i, x in enumerate(v):
            self.item.check(f"{where}[{i}]", x)


@dataclass(frozen=True)
class Flag:
    """A YAML boolean (true/false): 1, "yes" as a string or null are refused, not guessed."""

    def check(self, where: str, v: Any) -> None:
        """Raise InputError naming `where` unless `v` is a boolean."""
        if not isinstance(v, bool):
            raise InputError(f"{where} must be true or false, got {v!r}")


Rule = Num | Text | ListOf | Flag
SEED = Num(0, 2**32 - 1, integer=True)
COUNT = 10**9  # a generous upper bound for step and trial counts (they must still be finite integers)
Rules = dict[str, "Rule | Rules"]  # a nested dict is a section


def check_values(values: dict[str, Any], rules: Rules, prefix: str = "", where: str = "") -> None:
    """Check every key of `values` that has a rule (sections recursively).

    Messages name the key's dotted path after `where`, the whole after `prefix` (e.g. "config: ").
    """
    for key, rule in rules.items():
        if key not in values:
            continue
        path = f"{where}.{key}" if where else key
        if isinstance(rule, dict):
            check_values(values[key], rule, prefix, path)
        else:
            rule.check(prefix + path, values[key])


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # noqa: D102
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first != line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} on line {line} (first on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line for a YAML error: its problem and where."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML config file as a mapping ({} if empty); every way it can be unreadable is one InputError."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a config file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 text file (byte {e.start} is {data[e.start]:#04x})") from None
    if "\x00" in text:
        raise InputError(f"{path}: a binary file, not a YAML config")
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the config must be a mapping, got {type(raw).__name__}")
    return raw
