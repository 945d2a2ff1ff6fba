"""Accounts: who a user is, from Django's own auth (sessions, password hashers, admin).

Accounts live in Django's ORM database (SQLite under VAR_DIR by default, PostgreSQL via
DATABASE_URL); chat data stays in MongoDB, keyed by the account. This package holds the
account model with its role, personal API keys (stored hashed), the one-time setup token
that creates the first admin, and the sign-in, sign-up and account pages.
"""
