"""`manage.py key_create <username> --name <name> [--scope personal|service]`: print a new API
key's secret (its only appearance) for scripts, tests and benchmarks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.accounts import keys
from webapp.accounts.models import Account, KeyScope


class Command(BaseCommand):
    help = "Create an API key for an account and print it (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scope", choices=list(KeyScope.values), default=KeyScope.PERSONAL)

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(username=options["username"]).first()
        if account is None:
            raise CommandError(f"no account {options['username']!r}")
        new = keys.key_create(account=account, name=options["name"], scope=options["scope"])
        self.stdout.write(new.secret)
