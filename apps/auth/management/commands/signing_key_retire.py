"""Stop publishing an old signing key once every token it signed has expired."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.auth import keys
from apps.auth.models import SigningKey


class Command(BaseCommand):
    help = "Retire a signing key (remove it from the JWKS). The active key cannot be retired."

    def add_arguments(self, parser):
        parser.add_argument("kid")

    def handle(self, *args, kid, **options):
        if kid == keys.active_key().kid:
            raise CommandError("this key signs new tokens; configure a new AUTH_SIGNING_KEY first")
        updated = SigningKey.objects.filter(kid=kid, retired_at__isnull=True).update(retired_at=timezone.now())
        if not updated:
            raise CommandError(f"no published key with kid {kid}")
        self.stdout.write(f"retired {kid}; verifiers drop it within JWKS_CACHE_SECONDS={settings.JWKS_CACHE_SECONDS}s")
