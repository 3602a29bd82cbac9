"""conpaassql-client: the seed-compatible command-line client of the manager."""
