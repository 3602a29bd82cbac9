"""``python -m conpaassql.client``: the same as ``conpaassql-client``."""

from conpaassql.client.cli import main

main()
