"""A node's context as cloud-init user data, for the clouds that boot from it.

The user data is a template with ``${CONPAASSQL_CONTEXT}`` where the node's
context goes, base64-encoded. The built-in one is a ``#cloud-config`` for an image
prepared with the agent installed (``contrib/``): it writes the context where the
agent reads it, mode 0600, and starts the agent. ``contrib/cloud-init/`` has one
that installs everything on a plain Debian image.
"""

from __future__ import annotations

import base64
from pathlib import Path

from conpaassql.errors import ConfigError

PLACEHOLDER = "${CONPAASSQL_CONTEXT}"
#: Where the agent's unit reads the node's context.
CONTEXT_PATH = "/etc/conpaassql/context"
#: The providers' limit on user data (EC2: 16 KiB before base64).
MAX_USER_DATA = 16 * 1024

PREPARED_IMAGE = f"""#cloud-config
# A conpaassql node on an image with the agent installed: its context, then the agent.
write_files:
  - path: {CONTEXT_PATH}
    owner: root:root
    permissions: '0600'
    encoding: b64
    content: {PLACEHOLDER}
runcmd:
  - [systemctl, enable, --now, conpaassql-agent.service]
"""


def read_template(path: Path | None, origin: str) -> str:
    """The user-data template: the file given (checked to hold the placeholder), or
    the built-in one."""
    if path is None:
        return PREPARED_IMAGE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{origin} USER_DATA {path}", detail=exc.strerror or str(exc)) \
            from None
    except UnicodeDecodeError:
        raise ConfigError(f"{origin} USER_DATA {path}", detail="not UTF-8 text") from None
    if PLACEHOLDER not in text:
        raise ConfigError(f"{origin} USER_DATA {path}", detail=f"has no {PLACEHOLDER}: a "
                          "node would not learn its context")
    return text


def render_user_data(template: str, context_text: str) -> str:
    """The user data of one node."""
    encoded = base64.b64encode(context_text.encode("utf-8")).decode("ascii")
    data = template.replace(PLACEHOLDER, encoded)
    if len(data.encode("utf-8")) > MAX_USER_DATA:
        raise ConfigError("USER_DATA", detail=f"the user data would be {len(data)} bytes; "
                          f"clouds take at most {MAX_USER_DATA}")
    return data
