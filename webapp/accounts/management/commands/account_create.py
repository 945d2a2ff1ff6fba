"""`manage.py account_create <username> --role user [--password-stdin]`: an account made by the
project's own code, for scripts, tests, benchmarks and the Locust users. Without
--password-stdin the account gets a random password (it then signs in with API keys only)."""

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
        self.stdout.write(f"account {account.username} ({account.role})")
