"""HTML pages: the chat UI of this app, and the landing page that leads to both apps.

The pages are static shells; the browser loads personas, conversations and messages
through the REST API and chats over the WebSocket (static/chat/chat.js).
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render

from webapp.chat import runtime
from webapp.chat.inputs import INPUT_MAX

APPS = {
    "office": {
        "id": "office",
        "title": "Office assistant",
        "href": "/office/",
        "description": "Work help: writing, summaries, plans and answers, in Korean or English.",
    },
    "character": {
        "id": "character",
        "title": "Characters",
        "href": "/character/",
        "description": "Role-play with characters who have a name, a voice and a story.",
    },
}


def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat UI, for a signed-in account (others go to sign in; a pending one to its account
    page, which says it waits for approval). The page's API calls use the session cookie."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if request.user.role == "pending":
        return redirect("/accounts/")
    app = runtime.wiring_get().ui
    other = APPS["character" if app == "office" else "office"]
    page_config = {
        "app": app,
        "api_base": f"/{app}",
        "ws_path": f"/{app}/ws/chat/",
        "input_max": INPUT_MAX,
        "model": runtime.model_spec_get().alias,
        "other_app": {"title": other["title"], "href": other["href"]},
        "username": request.user.username,
        "csrf_token": get_token(request),
    }
    return render(request, "chat/index.html", {"app": app, "app_title": APPS[app]["title"], "page_config": page_config})


def landing_page(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/landing.html", {"apps": list(APPS.values())})
