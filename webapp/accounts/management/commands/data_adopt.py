"""`manage.py data_adopt <old user_id> <username>`: give an account the data a deployment
stored under a `user_id` label before accounts existed (webapp.accounts.legacy): both apps'
conversations, and the office's documents, passages (search index included), notes,
approvals and tool audit. Run it with the stack stopped; a second run finds nothing."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.accounts.identity import owner_key
from webapp.accounts.legacy import StoresInUse, legacy_adopt
from webapp.accounts.models import Account


class Command(BaseCommand):
    help = "Move the data stored under a pre-account user_id label to an account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user_id", help="the label the data was stored under before accounts (the old user_id)")
        parser.add_argument("username", help="the account that gets it")

    def handle(self, *args: Any, **options: Any) -> None:
        label, username = options["user_id"], options["username"]
        account = Account.objects.filter(username=username).first()
        if account is None:
            raise CommandError(f"no account {username!r}")
        try:
            moved = legacy_adopt(label, account)
        except StoresInUse as exc:
            raise CommandError(str(exc)) from None
        summary = ", ".join(f"{n} {what}" for what, n in moved.items())
        self.stdout.write(f"{label!r} → account {username} ({owner_key(account.pk)}): {summary}")
