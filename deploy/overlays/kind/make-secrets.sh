#!/usr/bin/env bash
# Writes secrets/ for the kind overlay with fresh random values (once: an existing folder is kept).
# git ignores secrets/; the shapes are those of secrets.example/.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -e secrets ]]; then
  echo "secrets/ exists; delete it to make new secrets" >&2
  exit 1
fi
mkdir -m 700 secrets
random() { openssl rand -hex "$1"; }
host=postgresql.platform.svc.cluster.local
{
  echo "POSTGRES_USER=postgres"
  echo "POSTGRES_PASSWORD=$(random 24)"
} >secrets/postgresql.env
for service in auth orders payments notifications; do
  db_password=$(random 24)
  echo "${service^^}_DB_PASSWORD=$db_password" >>secrets/postgresql.env
  {
    echo "SECRET_KEY=$(random 32)"
    echo "DATABASE_URL=postgres://$service:$db_password@$host:5432/$service"
    if [[ $service != auth ]]; then
      echo "SERVICE_CLIENT_SECRET=$(random 32)"
    fi
  } >"secrets/$service.env"
done
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out secrets/auth-signing-key.pem 2>/dev/null
chmod 600 secrets/*
echo "wrote $(pwd)/secrets"
