"""The YAML a sweep spec is read with (`SpecLoader`): the safe loader, less what no spec needs and
what could make a small file expensive or ambiguous (anchors and aliases, duplicate keys, numbers
of hundreds of digits)."""

from __future__ import annotations

import contextlib
from typing import Any

import yaml

MAX_DIGITS = 30  # no setting needs a longer number; Python refuses to read one of 4300 digits


class SpecLoader(yaml.SafeLoader):
    """YAML's safe loader without anchors and aliases, and without numbers no setting needs.

    An alias (`*x`) repeats what its anchor (`&x`) names wherever it is used: a few hundred bytes
    of aliases of aliases expand to gigabytes (a 'billion laughs'), in a name, a learning rate or a
    Slurm option alike. A spec has no need of them, so the first anchor or alias is refused, before
    anything is built from the file.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise yaml.composer.ComposerError(
                None,
                None,
                f"anchors and aliases ({sign}{anchor}) are not allowed: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """A mapping whose keys are unique: YAML's loader keeps the last of two equal keys, so a
        second `methods:` would silently replace the first."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            with contextlib.suppress(TypeError):  # an unhashable key fails in the base class
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (each key once)", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of {digits} digits (at most {MAX_DIGITS})", node.start_mark
            )
        return super().construct_yaml_int(node)


SpecLoader.add_constructor("tag:yaml.org,2002:int", SpecLoader.construct_yaml_int)
