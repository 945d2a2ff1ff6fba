"""nginx in front of the apps: routing, error pages, limits, request ids, streaming settings."""

from __future__ import annotations

import subprocess

import pytest

from tests.auth import account_create, signin
from webapp.launcher.nginx import TemplateVariableError, nginx_config_write, template_render
from webapp.launcher.stack import nginx_binary


def test_unknown_path_is_json_for_api_clients(http, gateway):
    response = http.get(f"{gateway}/no/such/thing", headers={"Accept": "application/json"}, timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == "not_found"
    assert "POST /office/Llama" in body["error"]["endpoints"]


def test_unknown_path_is_html_for_browsers(http, gateway):
    response = http.get(f"{gateway}/no/such/thing", headers={"Accept": "text/html,*/*;q=0.8"}, timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "/office/docs" in response.text


def test_app_prefix_without_slash_redirects_to_the_chat(http, gateway):
    response = http.get(f"{gateway}/character", allow_redirects=False, timeout=10)
    assert response.status_code == 301 and response.headers["Location"].endswith("/character/")


def test_unknown_path_inside_an_app_lists_that_apps_endpoints(http, gateway):
    response = http.get(f"{gateway}/character/nope", timeout=10)
    assert response.status_code == 404
    endpoints = response.json()["error"]["endpoints"]
    assert "POST /character/Llama" in endpoints
    assert all(e.split(" ", 1)[1].startswith("/character/") for e in endpoints)


def test_each_prefix_reaches_its_own_app(http, gateway):
    assert http.get(f"{gateway}/office/health", timeout=10).json()["app"] == "office"
    assert http.get(f"{gateway}/character/health", timeout=10).json()["app"] == "character"


def test_landing_page_comes_from_the_office_app(http, gateway):
    response = http.get(f"{gateway}/", timeout=10)
    assert response.status_code == 200
    assert 'href="/office/"' in response.text and 'href="/character/"' in response.text
    assert "/office/static/chat/chat.css" in response.text


def test_landing_page_falls_back_to_the_gateway_while_office_is_down(http, gateway, stack):
    stack.app_stop("office")
    try:
        response = http.get(f"{gateway}/", timeout=10)
        assert response.status_code == 200
        assert "fallback page" in response.text and 'href="/character/"' in response.text
    finally:
        stack.app_start("office")
        stack.wait_app_ready("office")
    assert "/office/static/chat/chat.css" in http.get(f"{gateway}/", timeout=10).text


@pytest.mark.parametrize("app", ["office", "character"])
def test_chat_page_and_its_assets_are_served_through_nginx(stack, gateway, app):
    http = signin(gateway, account_create(stack))
    page = http.get(f"{gateway}/{app}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f'"ws_path": "/{app}/ws/chat/"' in page.text
    for asset in ("chat.css", "chat.js", "markdown.js"):
        assert f"/{app}/static/chat/{asset}" in page.text
        served = http.get(f"{gateway}/{app}/static/chat/{asset}", timeout=10)
        assert served.status_code == 200 and len(served.content) > 1000
    # No third-party host anywhere: every script and style comes from the project.
    assert "://" not in page.text.split("<body", 1)[0].replace("http-equiv", "")


def test_request_id_is_passed_through_and_generated(http, gateway, stack):
    given = http.get(f"{gateway}/office/health", headers={"X-Request-ID": "trace-123"}, timeout=10)
    assert given.headers["X-Request-ID"] == "trace-123"
    made = http.get(f"{gateway}/office/health", timeout=10)
    assert len(made.headers["X-Request-ID"]) == 32
    # One header, not nginx's and the app's both.
    assert "," not in made.headers["X-Request-ID"]
    notfound = http.get(f"{gateway}/missing", headers={"X-Request-ID": "trace-404"}, timeout=10)
    assert notfound.headers["X-Request-ID"] == "trace-404"


def test_rendered_config_has_streaming_and_websocket_settings(stack):
    conf = (stack.config.var_dir / "nginx" / "default.conf").read_text()
    for directive in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $chat_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_read_timeout 600s;",
        "client_max_body_size 64k;",
    ):
        assert directive in conf
    assert "${" not in conf


def test_template_render_refuses_a_missing_variable():
    with pytest.raises(TemplateVariableError, match="OFFICE_UPSTREAM"):
        template_render("server ${OFFICE_UPSTREAM};", {})
    # nginx's own variables are left alone.
    assert template_render("$host ${A}", {"A": "x"}) == "$host x"


def test_rendered_config_passes_nginx_t(tmp_path):
    conf = nginx_config_write(
        prefix=tmp_path, gateway_port=18080, office="127.0.0.1:1", character="127.0.0.1:2", perf_pages=tmp_path / "perf"
    )
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("path", "size", "answered_by"),
    [
        ("/character/characters/import", 8 * 1024 * 1024 + 4096, "app"),  # the app names its 8 MiB limit
        ("/character/lorebooks", 8 * 1024 * 1024 + 4096, "app"),
        ("/character/characters", 200_000, "app"),  # card fields as JSON: past 64 KiB, under 5 MiB
        ("/character/characters", 6 * 1024 * 1024, "gateway"),
        ("/character/Llama", 200_000, "gateway"),  # every other JSON body: 64 KiB
        ("/office/conversations/import", 32 * 1024 * 1024 + 4096, "app"),  # the app names its 32 MiB limit
        ("/character/conversations/import", 34 * 1024 * 1024, "gateway"),
    ],
)
def test_bodies_past_the_limit_of_their_path_get_413_from_the_gateway(http, gateway, path, size, answered_by):
    """Card files and card fields are large: their paths let more through than other JSON
    bodies, which nginx refuses past 64 KiB before an app reads a byte."""
    if path.endswith(("import", "lorebooks")):
        response = http.post(f"{gateway}{path}", files={"file": ("big.json", b" " * size)}, timeout=60)
    else:
        body = b'{"data": {"name": "x", "description": "' + b"a" * size + b'"}}'
        response = http.post(f"{gateway}{path}", data=body, headers={"Content-Type": "application/json"}, timeout=60)
    error = response.json()["error"]
    if answered_by == "gateway":
        assert (response.status_code, error["code"]) == (413, "body_too_large")
    else:
        assert error["code"] != "body_too_large", response.text[:300]
        assert response.status_code in (400, 413), response.text[:300]
