"""The web front-end of a manager (``conpaassql gui``): server-rendered pages, one small
script and one style sheet, over the manager's public API only (``conpaassql.rpc``)."""
