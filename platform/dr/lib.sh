# shellcheck shell=bash
# What backup.sh and restore.sh share; sourced, never run.

# database_wait URL: wait until the database accepts connections, BACKUP_WAIT_SECONDS at most
# (default 60): a fail-over, or a new pod whose network policy is not in place yet.
database_wait() {
  local url=$1 wait_seconds=${BACKUP_WAIT_SECONDS:-60} deadline
  [[ $wait_seconds =~ ^[0-9]+$ ]] || { echo "BACKUP_WAIT_SECONDS must be a whole number, not '$wait_seconds'" >&2; exit 2; }
  deadline=$((SECONDS + wait_seconds))
  until pg_isready --quiet --timeout=5 --dbname="$url"; do
    ((SECONDS < deadline)) || { echo "the database accepted no connection within $wait_seconds s" >&2; exit 1; }
    sleep 1
  done
}
