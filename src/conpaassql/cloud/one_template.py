"""The seed's OpenNebula agent template: a file filled from ``[onevm_agent_template]``.

The file (``FILENAME``) holds an OpenNebula template with ``$NAME``, ``$CPU``,
``$MEM_SIZE``, ``$OS``, ``$DISK``, ``$IMAGE_ID``, ``$NETWORK_ID`` and
``$CONTEXT``, each filled with the section's value of that name; a ``$WORD``
the section does not define is an error naming it. What the values themselves
hold (``$VMID``, ``$NIC[IP]``...) is OpenNebula's, filled at deployment.

The node's context travels in the template's CONTEXT, after the section's own
context: ``CONPAASSQL_CONTEXT`` holds it base64-encoded (OpenNebula writes each
CONTEXT key into the VM's ``context.sh``; the agent's boot script decodes it),
and two top-level attributes tie the VM to its service and node.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

from conpaassql.errors import ConfigError

#: The seed's variables of the template file.
TEMPLATE_VARIABLES = ("NAME", "CPU", "MEM_SIZE", "OS", "DISK", "IMAGE_ID", "NETWORK_ID",
                      "CONTEXT")
SERVICE_ATTRIBUTE = "CONPAASSQL_SERVICE"
NODE_ATTRIBUTE = "CONPAASSQL_NODE"
CONTEXT_KEY = "CONPAASSQL_CONTEXT"
_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _quoted(value: str) -> str:
    """An OpenNebula template string value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_context(context_text: str) -> str:
    return base64.b64encode(context_text.encode("utf-8")).decode("ascii")


def decode_context(value: str) -> str:
    return base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")


def render_template(text: str, values: Mapping[str, str], *, origin: str, service_id: str,
                    node_id: int, node_context: str) -> str:
    """The template for one node: the file filled in, the node's context added."""
    values = {key.upper(): value for key, value in values.items()}
    unknown = sorted({m.group(1) for m in _VARIABLE.finditer(text)} - set(values))
    if unknown:
        names = ", ".join("$" + name for name in unknown)
        raise ConfigError(origin, detail=f"unknown variable(s) {names} (the section "
                          f"[onevm_agent_template] defines {', '.join(sorted(values)) or 'none'})")
    context = values.get("CONTEXT", "").strip().rstrip(",")
    ours = f"{CONTEXT_KEY} = {_quoted(encode_context(node_context))}"
    filled = dict(values)
    filled["NAME"] = f"{values.get('NAME', 'conpaassql')}-{service_id}-{node_id}"
    filled["CONTEXT"] = f"{context},\n  {ours}" if context else ours
    body = _VARIABLE.sub(lambda m: filled[m.group(1)], text)
    if "CONTEXT" not in {m.group(1) for m in _VARIABLE.finditer(text)}:
        body += f"\nCONTEXT = [\n  {filled['CONTEXT']}\n]\n"
    return (f"{body.rstrip()}\n{SERVICE_ATTRIBUTE} = {_quoted(service_id)}\n"
            f"{NODE_ATTRIBUTE} = {_quoted(str(node_id))}\n")
