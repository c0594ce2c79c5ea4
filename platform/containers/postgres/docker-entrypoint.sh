#!/bin/bash
# Start-up of the PostgreSQL stand-in, as the official image does it: on an empty PGDATA, initdb with
# POSTGRES_USER's password, run /docker-entrypoint-initdb.d/* against a server listening on its socket
# only, stop it; then run the server on every address with password authentication for TCP.
# Started as root (compose), it hands PGDATA to postgres and drops to that user; started as postgres
# (Kubernetes' runAsUser: 999), it goes straight on.
set -euo pipefail
PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-postgres}

if [[ $(id -u) == 0 ]]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to initialise the database}"
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  for script in /docker-entrypoint-initdb.d/*; do
    # shellcheck source=/dev/null
    case $script in
      *.sh) echo "running $script"; if [[ -x $script ]]; then "$script"; else . "$script"; fi ;;
      *.sql) echo "running $script"; psql --set=ON_ERROR_STOP=1 --no-psqlrc --username="$POSTGRES_USER" --dbname=postgres --file="$script" ;;
      *) [[ -e $script ]] && echo "ignoring $script" ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  echo "PostgreSQL initialised in $PGDATA"
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
