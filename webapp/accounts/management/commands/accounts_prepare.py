"""`manage.py accounts_prepare`: migrate the accounts database, set apart the data of a
deployment from before accounts (once: webapp.accounts.legacy) and, while no admin exists,
print the one-time setup token. The launcher (and docker-compose's `accounts` service) runs
it once before starting the apps, so the two apps never migrate the same database at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.accounts import legacy, setup_token
from webapp.accounts.models import Account, Role


class Command(BaseCommand):
    help = "Migrate the accounts database; print the setup token while no admin account exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--link", metavar="BASE_URL", help="also print the setup link under this base URL")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            Path(settings.DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        try:
            set_apart = legacy.legacy_set_apart_once()
        except legacy.StoresInUse as exc:
            raise CommandError(str(exc)) from None
        if set_apart and any(set_apart.values()):
            summary = ", ".join(f"{n} {what}" for what, n in set_apart.items())
            self.stdout.write(
                f"data from before accounts set apart ({summary}): give it to accounts with "
                "`manage.py data_adopt <old user_id> <username>`"
            )
        if Account.objects.filter(role=Role.ADMIN, is_active=True).exists():
            setup_token.token_discard()
            return
        token = setup_token.token_issue()
        self.stdout.write(f"setup-token {token}")
        if options["link"]:
            link = f"{options['link'].rstrip('/')}/accounts/setup?token={token}"
            self.stdout.write(f"Create the admin account (this link works once): {link}")
