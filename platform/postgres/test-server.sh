#!/usr/bin/env bash
# A PostgreSQL server for the test suite on 127.0.0.1:5432, with trust authentication for TCP from
# 127.0.0.1 only: Debian's `postgresql` package, installed if missing, its cluster started by hand
# (these machines have no systemd). Safe to run again: what is already there is kept.
set -euo pipefail
SUDO=$([[ $(id -u) == 0 ]] || echo sudo)

if ! command -v pg_ctlcluster >/dev/null || ! compgen -G "/etc/postgresql/*/main" >/dev/null; then
  echo "installing Debian's postgresql" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
fi
version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
hba=/etc/postgresql/$version/main/pg_hba.conf
rule="host all all 127.0.0.1/32 trust"
if ! $SUDO grep -qx "$rule" "$hba"; then
  # First match wins in pg_hba.conf: the rule goes on top, with a comment saying what it is for.
  $SUDO sed -i "1i # Tests: any role from 127.0.0.1 without a password (platform/postgres/test-server.sh).\n$rule" "$hba"
  if pg_isready -h 127.0.0.1 -p 5432 -q; then $SUDO pg_ctlcluster "$version" main reload; fi
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
