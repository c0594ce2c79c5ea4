#!/usr/bin/env bash
# Writes secrets/ for the kind overlay with fresh random values (once: an existing folder is kept),
# and the backups' age key pair if the folder has none yet. git ignores secrets/; the shapes are
# those of secrets.example/.
#   secrets/backup-recipients.txt  the public key the backup CronJobs encrypt to (ConfigMap backup-recipients)
#   secrets/backup-identity.txt    the private key that restores them: it never goes into the cluster
set -euo pipefail
cd "$(dirname "$0")"

backup_keys_write() {
  command -v age-keygen >/dev/null || { echo "age-keygen is missing: apt-get install age" >&2; exit 1; }
  (umask 077 && age-keygen -o secrets/backup-identity.txt 2>/dev/null)
  age-keygen -y secrets/backup-identity.txt >secrets/backup-recipients.txt
  echo "wrote the backups' key pair: $(pwd)/secrets/backup-identity.txt (keep it out of the cluster)"
}

if [[ -e secrets ]]; then
  if [[ ! -e secrets/backup-identity.txt ]]; then
    backup_keys_write
    exit 0
  fi
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
backup_keys_write
echo "wrote $(pwd)/secrets"
