#!/usr/bin/env bash
# run-manager-client.sh HOST PORT METHOD [ARGS...]
#
# The seed's manager client, kept so its command lines work as written:
#   ./run-manager-client.sh 10.30.1.1 50000 list_nodes
#   ./run-manager-client.sh 10.30.1.1 50000 add_node agent
#   ./run-manager-client.sh 10.30.1.1 50000 delete_nodes 1815
# It runs conpaassql-client from this checkout's .venv, else the one on PATH,
# with the same arguments (see: conpaassql-client --help).
set -euo pipefail

script=$(readlink -f -- "${BASH_SOURCE[0]}" 2>/dev/null || printf '%s' "${BASH_SOURCE[0]}")
root=$(cd -- "$(dirname -- "$script")/.." && pwd -P)

if [[ -x "$root/.venv/bin/conpaassql-client" ]]; then
    exec "$root/.venv/bin/conpaassql-client" "$@"
elif client=$(command -v conpaassql-client); then
    exec "$client" "$@"
fi
echo "run-manager-client.sh: conpaassql-client not found in $root/.venv/bin or on PATH" >&2
echo "(install the project: python -m venv .venv && .venv/bin/pip install -e .)" >&2
exit 127
