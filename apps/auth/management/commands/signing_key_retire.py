"""Stop publishing an old signing key once every token it signed has expired."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.auth import keys


class Command(BaseCommand):
    help = "Retire a signing key (remove it from the JWKS). The active key cannot be retired."

    def add_arguments(self, parser):
        # An option, not a positional: a kid is base64url, so one in 64 begins with "-", which
        # argparse reads as an option name. `--kid=VALUE` takes any value. Not `required=True`:
        # call_command passes a required option to argparse as two words ("--kid", kid), which
        # fails the same way; checked in handle() instead, so call_command(kid=...) takes any kid.
        parser.add_argument("--kid", help="the key's kid, as the JWKS publishes it: --kid=KID")

    def handle(self, *args, kid, **options):
        if not kid:
            raise CommandError("the kid to retire is required: --kid=KID")
        try:
            keys.signing_key_retire(kid=kid)
        except (keys.SigningKeyActive, keys.SigningKeyUnknown) as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(f"retired {kid}; verifiers drop it within JWKS_CACHE_SECONDS={settings.JWKS_CACHE_SECONDS}s")
