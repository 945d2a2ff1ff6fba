"""`manage.py account_create <username> --role user [--password-stdin] [--turn-rate 30/m]
[--max-generations 4] [--daily-token-quota 0]`: an account made by the project's own code,
for scripts, tests, benchmarks and the Locust users. Without --password-stdin the account
gets a random password (it then signs in with API keys only). The limits options set the
account's own limits (webapp.accounts.usage), as an admin would in Django admin."""

from __future__ import annotations

import secrets
import sys
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.accounts import services
from webapp.accounts.models import Account, Role


class Command(BaseCommand):
    help = "Create an account with a role (admin, user, pending, demo)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=list(Role.values), default=Role.USER)
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        parser.add_argument("--turn-rate", default="", help="this account's chat turns per period, like 30/m")
        parser.add_argument("--max-generations", type=int, default=None, help="replies generated at once")
        parser.add_argument("--daily-token-quota", type=int, default=None, help="tokens per UTC day; 0: no quota")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        if Account.objects.filter(username=username).exists():
            raise CommandError(f"username {username!r} is taken")
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
            try:
                validate_password(password, Account(username=username))
            except ValidationError as exc:
                raise CommandError("password: " + " ".join(exc.messages)) from None
        else:
            password = secrets.token_urlsafe(24)
        account = services.account_create(username=username, password=password, role=Role(options["role"]))
        account.turn_rate = options["turn_rate"]
        account.max_generations = options["max_generations"]
        account.daily_token_quota = options["daily_token_quota"]
        try:
            account.full_clean(exclude=["password", "username"])
        except ValidationError as exc:
            account.delete()
            raise CommandError(" ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        account.save()
        self.stdout.write(f"account {account.username} ({account.role})")
