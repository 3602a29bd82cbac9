#!/usr/bin/env bash
# Runs the manager in the foreground with the local cloud (used by `make run`).
set -euo pipefail
venv="$1" config="$2" state_dir="$3" bind="$4" port="$5"
cd "$(dirname "$0")/.."
mkdir -p "$state_dir"
cat <<TXT
conpaassql manager: http://$bind:$port/  (state in $state_dir/, log in $state_dir/manager.log)
  add a node:     $venv/bin/conpaassql-client $bind $port add_nodes 1
  see the nodes:  $venv/bin/conpaassql-client $bind $port list_nodes --table
  service state:  $venv/bin/conpaassql-client $bind $port get_service_info
  or with curl:   curl -s '$bind:$port/?method=list_nodes&id=1'
Ctrl-C stops the manager; the nodes keep running until \`shutdown\`.
TXT
exec "$venv/bin/conpaassql" manager -c "$config" -b "$bind" -p "$port" --state-dir "$state_dir"
