"""Names spliced into statements: backtick-quoted identifiers and GRANT targets.

The names are validated first (``conpaassql.names``); quoting is the only way a
name enters a statement's text.
"""

from __future__ import annotations

from conpaassql.names import check_grantable_database, grant_pattern


def quote_identifier(name: str) -> str:
    """``name`` as a backtick-quoted identifier (internal backticks doubled)."""
    return "`" + name.replace("`", "``") + "`"


def quote_grant_database(name: str, param: str = "database") -> str:
    """``name`` for ``GRANT ... ON <here>.*``: escaped, length-checked, quoted."""
    return quote_identifier(grant_pattern(check_grantable_database(name, param)))
