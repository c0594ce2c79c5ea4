#!/usr/bin/env bash
# One backup, encrypted with age to public recipients (the machine that takes backups cannot read
# them), written under a temporary name and renamed only when complete, with a sha256 beside it; then
# the oldest of the same name beyond BACKUP_KEEP are removed. Two kinds:
#   a service database's logical dump (`pg_dump` custom format): BACKUP_DIR/<name>-<UTC time>.dump.age
#   a file, such as auth's signing key or exported Secrets:      BACKUP_DIR/<name>-<UTC time>.file.age
#
#   DATABASE_URL            the database to dump (postgres://...), or
#   BACKUP_SOURCE_FILE      the file to back up instead
#   BACKUP_DIR              where backups go
#   BACKUP_NAME             the name in the file (the service: auth, orders, payments, notifications)
#   BACKUP_RECIPIENTS_FILE  age public keys (one per line) the backup is encrypted to
#   BACKUP_KEEP             how many backups of this name to keep (default 14; older ones are removed)
#   PG_DUMP_SNAPSHOT        optional: dump this exported snapshot (pg_export_snapshot()) instead of a new one
#   BACKUP_WAIT_SECONDS     how long to wait for the database to accept connections first (default 60):
#                           a fail-over, or a pod whose network policy is not in place yet
#
# Prints the path of the new backup on stdout. Exits non-zero, leaving no partial file, on any error.
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

[[ -n ${DATABASE_URL:-} || -n ${BACKUP_SOURCE_FILE:-} ]] || { echo "set DATABASE_URL or BACKUP_SOURCE_FILE" >&2; exit 2; }
: "${BACKUP_DIR:?BACKUP_DIR is not set}"
: "${BACKUP_NAME:?BACKUP_NAME is not set}"
: "${BACKUP_RECIPIENTS_FILE:?BACKUP_RECIPIENTS_FILE is not set}"
keep=${BACKUP_KEEP:-14}
[[ $keep =~ ^[1-9][0-9]*$ ]] || { echo "BACKUP_KEEP must be a positive integer, not '$keep'" >&2; exit 2; }
[[ $BACKUP_NAME =~ ^[a-z][a-z0-9_-]*$ ]] || { echo "BACKUP_NAME must be a plain name, not '$BACKUP_NAME'" >&2; exit 2; }
[[ -s $BACKUP_RECIPIENTS_FILE ]] || { echo "no age recipients in $BACKUP_RECIPIENTS_FILE" >&2; exit 2; }

mkdir -p "$BACKUP_DIR"
# Milliseconds: two backups in one second keep two names, and the names still sort by time.
stamp=$(date -u +%Y%m%dT%H%M%S%3NZ)
kind=$([[ -n ${BACKUP_SOURCE_FILE:-} ]] && echo file || echo dump)
final="$BACKUP_DIR/$BACKUP_NAME-$stamp.$kind.age"
partial="$final.partial"
trap 'rm -f "$partial"' EXIT

snapshot=()
[[ -n ${PG_DUMP_SNAPSHOT:-} ]] && snapshot=(--snapshot="$PG_DUMP_SNAPSHOT")
if [[ $kind == file ]]; then
  age --encrypt --recipients-file "$BACKUP_RECIPIENTS_FILE" --output "$partial" "$BACKUP_SOURCE_FILE"
else
  database_wait "$DATABASE_URL"
  # pipefail: a failed pg_dump fails the pipeline even though age succeeds on what it was given.
  pg_dump --format=custom --no-owner --no-privileges "${snapshot[@]}" --dbname="$DATABASE_URL" \
    | age --encrypt --recipients-file "$BACKUP_RECIPIENTS_FILE" --output "$partial"
fi
sync "$partial"
(cd "$BACKUP_DIR" && sha256sum "$(basename "$partial")" | sed 's/\.partial$//' > "$(basename "$final").sha256")
mv "$partial" "$final"

# Retention: the names sort by time; only complete backups (with their checksum) count.
mapfile -t backups < <(find "$BACKUP_DIR" -maxdepth 1 -name "$BACKUP_NAME-*.$kind.age" -printf '%f\n' | sort)
excess=$(( ${#backups[@]} - keep ))
for (( i = 0; i < excess; i++ )); do
  rm -f "$BACKUP_DIR/${backups[i]}" "$BACKUP_DIR/${backups[i]}.sha256"
  echo "removed ${backups[i]} (keeping the newest $keep)" >&2
done
echo "$final"
