"""Routes under /accounts/ (nginx sends them to the office app; the session is valid on both)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from webapp.accounts import views

app_name = "accounts"

urlpatterns = [
    path("", views.account_page, name="account"),
    path("signin", views.SigninView.as_view(), name="signin"),
    path("signout", views.SignoutView.as_view(), name="signout"),
    path("signup", views.signup, name="signup"),
    path("setup", views.setup, name="setup"),
    path("password", views.PasswordChangeView.as_view(), name="password"),
    path("delete", views.account_delete, name="delete"),
]

admin_urlpatterns = [path("accounts/admin/", admin.site.urls)]
