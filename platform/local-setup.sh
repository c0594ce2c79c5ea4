#!/usr/bin/env bash
# Prepares the local run of `make up`: an env file with fresh secrets (once), every service's
# migrations applied to its own SQLite database, and the service clients provisioned in auth.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
ENV_FILE=data/local.env
mkdir -p data/run

if [[ ! -f $ENV_FILE ]]; then
  secret() { openssl rand -hex 32; }
  cat >"$ENV_FILE" <<ENV
# Written by platform/local-setup.sh for local runs only; delete it to get new secrets.
DEBUG=true
HOST=127.0.0.1
WEB_CONCURRENCY=2
ALLOWED_HOSTS=127.0.0.1,localhost
SECRET_KEY=$(secret)
AUTH_SIGNING_KEY_FILE=data/auth-signing-key.pem
AUTH_DATABASE_URL=sqlite:///$PWD/data/auth.sqlite3
ORDERS_DATABASE_URL=sqlite:///$PWD/data/orders.sqlite3
PAYMENTS_DATABASE_URL=sqlite:///$PWD/data/payments.sqlite3
NOTIFICATIONS_DATABASE_URL=sqlite:///$PWD/data/notifications.sqlite3
ORDERS_CLIENT_SECRET=$(secret)
PAYMENTS_CLIENT_SECRET=$(secret)
NOTIFICATIONS_CLIENT_SECRET=$(secret)
APP_VERSION=local
ENV
  echo "wrote $ENV_FILE"
fi
if [[ ! -f data/auth-signing-key.pem ]]; then
  (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out data/auth-signing-key.pem 2>/dev/null)
fi

set -a
# shellcheck disable=SC1090
source "$ENV_FILE"
set +a

for service in auth orders payments notifications; do
  url_var="${service^^}_DATABASE_URL"
  SERVICE=$service DATABASE_URL=${!url_var} "$PYTHON" manage.py migrate --no-input -v 0
  echo "migrated $service"
done

# Which service may call what: the scopes each service's client may ask for.
SERVICE=auth DATABASE_URL=$AUTH_DATABASE_URL "$PYTHON" manage.py service_client_ensure orders \
  --secret-env ORDERS_CLIENT_SECRET --scope payments:charge --scope payments:refund --scope notifications:publish
SERVICE=auth DATABASE_URL=$AUTH_DATABASE_URL "$PYTHON" manage.py service_client_ensure payments \
  --secret-env PAYMENTS_CLIENT_SECRET --scope notifications:publish
SERVICE=auth DATABASE_URL=$AUTH_DATABASE_URL "$PYTHON" manage.py service_client_ensure notifications \
  --secret-env NOTIFICATIONS_CLIENT_SECRET
