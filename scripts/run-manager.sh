#!/usr/bin/env bash
# Runs the manager in the foreground with the local cloud (used by `make run`).
set -euo pipefail
venv="$1" config="$2" state_dir="$3" bind="$4" port="$5"
cd "$(dirname "$0")/.."
mkdir -p "$state_dir"
case "$bind" in
    127.*|localhost|::1)
        client="$venv/bin/conpaassql-client"
        cat <<TXT
conpaassql manager: http://$bind:$port/  (state in $state_dir/, log in $state_dir/manager.log)
  add a node:     $client $bind $port add_nodes 1
  see the nodes:  $client $bind $port list_nodes --table
  service state:  $client $bind $port get_service_info
  or with curl:   curl -s '$bind:$port/?method=list_nodes&id=1'
TXT
        ;;
    *)
        client="CONPAASSQL_CA_FILE=$state_dir/pki/ca.crt $venv/bin/conpaassql-client --https"
        client="$client --token-file $state_dir/secrets/api_token"
        cat <<TXT
conpaassql manager: https://$bind:$port/, TLS and an API token needed beyond loopback
  (state in $state_dir/, log in $state_dir/manager.log; the owner's token is made at
  first start in $state_dir/secrets/api_token, the CA in $state_dir/pki/ca.crt)
  add a node:     $client $bind $port add_nodes 1
  see the nodes:  $client $bind $port list_nodes --table
TXT
        ;;
esac
echo "Ctrl-C stops the manager; the nodes keep running until \`shutdown\`."
exec "$venv/bin/conpaassql" manager -c "$config" -b "$bind" -p "$port" --state-dir "$state_dir"
