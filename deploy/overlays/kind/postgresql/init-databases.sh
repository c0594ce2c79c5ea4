#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory: one role and one database per service,
# so that no service can read another's tables.
set -euo pipefail
for service in auth orders payments notifications; do
  password_var="${service^^}_DB_PASSWORD"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=service="$service" --set=password="${!password_var}" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
done
