#!/usr/bin/env bash
# One role and one database per service, so that no service can read another's tables.
# The postgres image runs this once, when its data volume is first initialised; each service's
# password comes from <SERVICE>_DB_PASSWORD (for example AUTH_DB_PASSWORD). SERVICE_DATABASES may
# name other databases (tests use that to run this script against a shared server).
set -euo pipefail

for service in ${SERVICE_DATABASES:-auth orders payments notifications}; do
  password_variable="${service^^}_DB_PASSWORD"
  password="${!password_variable:?$password_variable is not set}"
  # The database belongs to the service's role, so the role owns its public schema (PostgreSQL 15
  # gives PUBLIC no CREATE there); CONNECT is revoked from PUBLIC, so other roles cannot even log in.
  psql --set=ON_ERROR_STOP=1 --no-psqlrc --quiet --username="${POSTGRES_USER:-postgres}" --dbname=postgres \
    --set=role="$service" --set=password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
  echo "database $service ready, owned by role $service"
done
