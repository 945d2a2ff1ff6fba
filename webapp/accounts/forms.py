"""Forms of the account pages, on Django's own auth forms (password validators included)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm

from webapp.accounts.models import Account, KeyScope


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = Account
        fields = ("username",)


class SetupForm(SignupForm):
    """The first admin: the setup token travels in a hidden field from the printed link."""

    token = forms.CharField(widget=forms.HiddenInput, max_length=128)


class KeyCreateForm(forms.Form):
    name = forms.CharField(max_length=64, strip=True)
    scope = forms.ChoiceField(choices=KeyScope.choices, initial=KeyScope.PERSONAL)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].widget.attrs.update(placeholder="e.g. my script", autocomplete="off")


class AccountDeleteForm(forms.Form):
    """Deleting your account asks for your password: a session left open is not enough."""

    password = forms.CharField(widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), strip=False)

    def __init__(self, account: Account, *args: Any, **kwargs: Any) -> None:
        self.account = account
        super().__init__(*args, **kwargs)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.account.check_password(password):
            raise forms.ValidationError("That is not your password.", code="password_incorrect")
        return password
