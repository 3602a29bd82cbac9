"""The service's server options as manager and agents exchange them: values as text,
names in the server's spelling, and the digest that tells two sets apart."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def wire_value(value: object) -> str:
    """A value as given in a request (string, number or boolean) as option text."""
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if isinstance(value, int | float):
        return repr(value)
    return str(value)


def option_key(name: str) -> str:
    """``name`` spelled as the server's variables are (``max-connections`` ->
    ``max_connections``); the agents check that it is an option at all."""
    return name.strip().lower().replace("-", "_")


def generation(options: Mapping[str, str]) -> str:
    """A short digest of a set of options (the same set, the same digest)."""
    text = json.dumps(dict(sorted(options.items())), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
