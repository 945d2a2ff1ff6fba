"""The persona chat service: a Django project (config, chat) plus the Django-free engine and store."""
