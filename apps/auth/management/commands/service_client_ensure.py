"""Provision a service's OAuth2 client from its configured secret: idempotent, safe to rerun on deploy."""

import os

from django.core.management.base import BaseCommand, CommandError

from apps.auth.client_secrets import MIN_LENGTH
from apps.auth.services import service_client_ensure


class Command(BaseCommand):
    help = "Create or update a service client with the secret read from an environment variable."

    def add_arguments(self, parser):
        parser.add_argument("client_id")
        parser.add_argument("--secret-env", required=True, help="environment variable holding the client secret")
        parser.add_argument("--scope", action="append", default=[], help="a scope the client may use (repeatable)")

    def handle(self, *args, client_id, secret_env, scope, **options):
        secret = os.environ.get(secret_env, "")
        if len(secret) < MIN_LENGTH:
            raise CommandError(
                f"{secret_env} must hold a client secret of at least {MIN_LENGTH} characters"
                " (a random one, for example `openssl rand -hex 32`)"
            )
        client = service_client_ensure(client_id=client_id, secret=secret, scopes=scope)
        self.stdout.write(f"service client {client.client_id} ready with scopes: {client.scopes or '(none)'}")
