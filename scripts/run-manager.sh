#!/usr/bin/env bash
# Runs the manager in the foreground with the local cloud, and its web front-end and a
# router in the background (used by `make run`); they stop when the manager does.
set -euo pipefail
venv="$1" config="$2" state_dir="$3" bind="$4" port="$5" gui_port="${6:-5000}"
# The router's own loopback address (Debian's MariaDB may hold 127.0.0.1:3306).
router_host="${7:-127.0.0.2}"
cd "$(dirname "$0")/.."
mkdir -p "$state_dir"
state="$(cd "$state_dir" && pwd)"
case "$bind" in
    127.*|localhost|::1)
        client="$venv/bin/conpaassql-client"
        manager_host="$bind" manager_https=false
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
        manager_host="$bind" manager_https=true
        case "$bind" in 0.0.0.0|::|"") manager_host=127.0.0.1 ;; esac
        cat <<TXT
conpaassql manager: https://$bind:$port/, TLS and an API token needed beyond loopback
  (state in $state_dir/, log in $state_dir/manager.log; the owner's token is made at
  first start in $state_dir/secrets/api_token, the CA in $state_dir/pki/ca.crt)
  add a node:     $client $bind $port add_nodes 1
  see the nodes:  $client $bind $port list_nodes --table
TXT
        ;;
esac

# The web front-end, on this machine's loopback, talks to the manager with the
# owner's token (the manager makes it at first start; the front-end reads it when
# it first needs it).
gui_config="$state/manager-gui.conf"
cat > "$gui_config" <<CONF
# Written by scripts/run-manager.sh (make run) for the manager on port $port.
MANAGER_HOST = '$manager_host'
MANAGER_PORT = $port
MANAGER_HTTPS = $manager_https
TOKEN_FILE = '$state/secrets/api_token'
CONF
if [ "$manager_https" = true ]; then
    echo "CA_FILE = '$state/pki/ca.crt'" >> "$gui_config"
fi
"$venv/bin/conpaassql" gui -c "$gui_config" -p "$gui_port" >> "$state_dir/gui.log" 2>&1 &
gui_pid=$!

# The router, once the manager answers: the writer and readers addresses to connect to.
router_options=(--manager "$manager_host:$port" --writer "$router_host:3306"
                --readers "$router_host:3307" --name make-run --state-dir "$state/router")
if [ "$manager_https" = true ]; then
    router_options+=(--https --ca-file "$state/pki/ca.crt" --token-file "$state/secrets/api_token")
fi
(
    until (exec 3<>"/dev/tcp/$manager_host/$port") 2>/dev/null; do sleep 0.2; done
    exec "$venv/bin/conpaassql" router "${router_options[@]}"
) >> "$state_dir/router.log" 2>&1 &
router_pid=$!
trap 'kill "$gui_pid" "$router_pid" 2>/dev/null || true' EXIT
echo "web front-end: http://127.0.0.1:$gui_port/  (log in $state_dir/gui.log)"
echo "router: writer $router_host:3306 (the master), readers $router_host:3307 (the slaves)"
echo "  (log in $state_dir/router.log)"
echo "Ctrl-C stops the manager, the front-end and the router; the nodes keep running until \`shutdown\`."
"$venv/bin/conpaassql" manager -c "$config" -b "$bind" -p "$port" --state-dir "$state_dir"
