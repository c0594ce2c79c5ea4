#!/usr/bin/env bash
# Restores one backup made by backup.sh: checks its sha256 and decrypts it with the age identity (the
# private key, kept apart from the machine that takes backups). A database dump is restored into an
# empty database in one transaction, so a failed restore leaves it empty rather than half written; a
# file is written to a path that must not exist yet.
#
#   BACKUP_FILE           the .dump.age or .file.age file (its .sha256 must be beside it)
#   BACKUP_IDENTITY_FILE  the age identity that decrypts it
#   DATABASE_URL          for a dump, the target: an empty database, connected to as the role that
#                         is to own the restored tables (the service's own role in production)
#   RESTORE_TO            for a file, where to write it (mode 0600)
#   BACKUP_WAIT_SECONDS   how long to wait for the database to accept connections first (default 60)
set -euo pipefail
# shellcheck source=lib.sh disable=SC1091 # followed with shellcheck -x; lib.sh is checked on its own
source "$(dirname "$0")/lib.sh"

: "${BACKUP_FILE:?BACKUP_FILE is not set}"
: "${BACKUP_IDENTITY_FILE:?BACKUP_IDENTITY_FILE is not set}"
[[ -f $BACKUP_FILE.sha256 ]] || { echo "no checksum beside $BACKUP_FILE (an incomplete backup?)" >&2; exit 2; }
(cd "$(dirname "$BACKUP_FILE")" && sha256sum --check --quiet "$(basename "$BACKUP_FILE").sha256") \
  || { echo "checksum mismatch: $BACKUP_FILE is damaged" >&2; exit 2; }

if [[ $BACKUP_FILE == *.file.age ]]; then
  : "${RESTORE_TO:?RESTORE_TO is not set}"
  [[ ! -e $RESTORE_TO ]] || { echo "$RESTORE_TO exists: restore a file to a new path" >&2; exit 2; }
  (umask 077 && age --decrypt --identity "$BACKUP_IDENTITY_FILE" --output "$RESTORE_TO" "$BACKUP_FILE")
  echo "restored $(basename "$BACKUP_FILE") to $RESTORE_TO" >&2
  exit 0
fi

: "${DATABASE_URL:?DATABASE_URL is not set}"
database_wait "$DATABASE_URL"
tables=$(psql --no-psqlrc --tuples-only --no-align --dbname="$DATABASE_URL" \
  --command="SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
[[ $tables == 0 ]] || { echo "the target database is not empty ($tables tables): restore into a fresh one" >&2; exit 2; }

age --decrypt --identity "$BACKUP_IDENTITY_FILE" "$BACKUP_FILE" \
  | pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname="$DATABASE_URL"
echo "restored $(basename "$BACKUP_FILE")" >&2
