#!/usr/bin/env bash
# Installs what conpaassql needs and is missing: MariaDB, HAProxy, Chromium, Prometheus and
# sysbench (OS packages, when root), a virtualenv, and the package with its test tools.
# Safe to run again.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"
cd "$(dirname "$0")/.."

missing=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v mariabackup >/dev/null 2>&1 || missing+=(mariadb-backup)
# Backups are compressed by the zstd program, through pipes.
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
# The router (conpaassql router, started by make run) runs HAProxy.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# Every datadir gets the time zone tables from the OS's zoneinfo.
[ -d /usr/share/zoneinfo ] || missing+=(tzdata)
# The tests run the field's load tool against a master; installed when root.
if [ "$(id -u)" -eq 0 ] && ! command -v sysbench >/dev/null 2>&1; then
    missing+=(sysbench)
fi
# The network-partition tests cut a node off with nftables; installed when root.
if [ "$(id -u)" -eq 0 ] && ! command -v nft >/dev/null 2>&1 && [ ! -x /usr/sbin/nft ]; then
    missing+=(nftables)
fi
# The browser tests drive the OS's Chromium (headless); installed when root.
if [ "$(id -u)" -eq 0 ] && ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
# The metrics test has a real Prometheus scrape the manager (and promtool check the rules).
if [ "$(id -u)" -eq 0 ] && ! command -v prometheus >/dev/null 2>&1 && [ ! -x /usr/bin/prometheus ]; then
    missing+=(prometheus)
fi
# The router's benchmark drives sysbench; installed when root.
if [ "$(id -u)" -eq 0 ] && ! command -v sysbench >/dev/null 2>&1; then
    missing+=(sysbench)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "bootstrap: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "bootstrap: creating the virtualenv $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing conpaassql and its test tools into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[test]'
    touch "$stamp"
fi
