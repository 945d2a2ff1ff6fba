"""URLs of one app process: everything lives under /<APP_MODE>/, as nginx routes it."""

from __future__ import annotations

from django.conf import settings
from django.contrib.staticfiles.views import serve as static_serve
from django.urls import include, path, re_path

from webapp.accounts.urls import admin_urlpatterns
from webapp.chat import views
from webapp.config.wiring import app_urlpatterns

urlpatterns = [
    # nginx sends "/" to one of the apps; either can serve the landing page.
    path("", views.landing_page, name="landing"),
    path(f"{settings.APP_MODE}/", include(app_urlpatterns())),
    # Sign-in, sign-up, the account page and Django admin; nginx routes /accounts/ to the
    # office app, and the session they set is valid on both apps (one database, one key).
    path("accounts/", include("webapp.accounts.urls")),
    *admin_urlpatterns,
    # Swagger UI's assets (and, later, the chat UI's). insecure=True serves them with
    # DEBUG off; they are small, versioned files from installed packages.
    re_path(
        rf"^{settings.APP_MODE}/static/(?P<path>.*)$",
        static_serve,
        kwargs={"insecure": True},
    ),
]

handler400 = "webapp.chat.errors.django_bad_request"
handler404 = "webapp.chat.errors.django_not_found"
handler500 = "webapp.chat.errors.django_server_error"
