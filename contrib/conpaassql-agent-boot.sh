#!/usr/bin/env bash
# Boot step of a node's image: read the node's context that the manager put in the VM's
# OpenNebula CONTEXT (CONPAASSQL_CONTEXT, base64), write it where the agent reads it
# (mode 0600: it holds the node's key and secrets) and start the agent.
#   CONTEXT_SH   where OpenNebula's context is (default: the one-context or /mnt copy)
#   CONTEXT_OUT  the agent's context file (default /etc/conpaassql/context)
#   --no-start   only write the file
set -euo pipefail
out="${CONTEXT_OUT:-/etc/conpaassql/context}"
source_file="${CONTEXT_SH:-}"
if [ -z "$source_file" ]; then
    for candidate in /var/run/one-context/one_env /mnt/context.sh /mnt/context/context.sh; do
        if [ -f "$candidate" ]; then source_file="$candidate"; break; fi
    done
fi
if [ -z "$source_file" ] || [ ! -f "$source_file" ]; then
    echo "conpaassql-agent-boot: no OpenNebula context found" >&2
    exit 1
fi
# shellcheck disable=SC1090
. "$source_file"
if [ -z "${CONPAASSQL_CONTEXT:-}" ]; then
    echo "conpaassql-agent-boot: $source_file has no CONPAASSQL_CONTEXT" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
umask 077
printf '%s' "$CONPAASSQL_CONTEXT" | base64 -d > "$out.tmp"
chmod 600 "$out.tmp"
mv "$out.tmp" "$out"
if [ "${1:-}" != "--no-start" ]; then
    systemctl enable --now conpaassql-agent.service
fi
