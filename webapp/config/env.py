"""Every environment variable the service reads, in one place, typed and validated.

Production differs from development only by these variables. `Env` is a pydantic model:
each field names its variable (`validation_alias`), its default and, in its description,
what it accepts. A bad value stops start-up with an `EnvError` that names the variable
and what it accepts. A variable that is set but empty counts as unset where a default or
"not configured" makes sense (marked `_EMPTY_IS_UNSET`); APP_MODE, LOG_LEVEL and
SECURITY_MODE must be spelled out, and an empty ALLOWED_HOSTS allows no host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, PydanticUseDefault

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_MODES = ("office", "character")
_DEV_SECRET = "dev-only-insecure-secret-key"  # noqa: S105 - rejected when PRODUCTION is true
_BOOLEAN = "a boolean (true/false/1/0)"


class EnvError(Exception):
    """An environment variable is missing or malformed."""


def _empty_is_unset(raw: Any) -> Any:
    if raw == "":
        raise PydanticUseDefault
    return raw


def _flag(raw: Any) -> Any:
    """true/yes/on/1 and false/no/off/0, any case; anything else is left for pydantic to refuse."""
    if isinstance(raw, str):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
    return raw


def _comma_separated(raw: Any) -> Any:
    return tuple(item.strip() for item in raw.split(",") if item.strip()) if isinstance(raw, str) else raw


def _starting_with(*prefixes: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None and not value.startswith(prefixes):
            raise ValueError(f"must start with {' or '.join(prefixes)}")
        return value

    return check


def _without_trailing_slash(value: str | None) -> str | None:
    return value.rstrip("/") if value else value


def _resolved(value: Path) -> Path:
    return value.resolve()


def _upper(raw: Any) -> Any:
    return raw.upper() if isinstance(raw, str) else raw


def _seconds(raw: Any) -> Any:
    """Python's own float(), as before: pydantic's number parsing is stricter about spaces and '_'."""
    return float(raw) if isinstance(raw, str) else raw


# Before-validators run last-listed first: an empty value becomes the default before anything else.
_EMPTY_IS_UNSET = BeforeValidator(_empty_is_unset)
Flag = Annotated[bool, Field(strict=True), BeforeValidator(_flag), _EMPTY_IS_UNSET]
Folder = Annotated[Path, AfterValidator(_resolved), _EMPTY_IS_UNSET]
HttpUrl = Annotated[
    str | None,
    AfterValidator(_starting_with("http://", "https://")),
    AfterValidator(_without_trailing_slash),
    _EMPTY_IS_UNSET,
]
MongoUrl = Annotated[str | None, AfterValidator(_starting_with("mongodb://", "mongodb+srv://")), _EMPTY_IS_UNSET]
DatabaseUrl = Annotated[
    str | None, AfterValidator(_starting_with("postgres://", "postgresql://", "sqlite:///")), _EMPTY_IS_UNSET
]
RedisUrl = Annotated[str | None, AfterValidator(_starting_with("redis://", "rediss://", "unix://")), _EMPTY_IS_UNSET]


def _rate(value: str) -> str:
    """django-ratelimit's rate: <count>/<period>, the period s, m, h or d with an optional multiplier."""
    if not re.fullmatch(r"[1-9][0-9]{0,6}/([1-9][0-9]{0,3})?[smhd]", value):
        raise ValueError("must look like 5/5m")
    return value


Rate = Annotated[str, AfterValidator(_rate), _EMPTY_IS_UNSET]
Names = Annotated[tuple[str, ...], BeforeValidator(_comma_separated)]


def _variable(name: str, default: Any, accepts: str) -> Any:
    """A field read from the environment variable `name`; `accepts` ends up in its error message."""
    return Field(default, validation_alias=name, description=accepts)


class Env(BaseModel):
    """The service's settings, read from the environment by `env_load`."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    app_mode: Literal["office", "character"] = _variable("APP_MODE", "office", "one of office, character")
    debug: Flag = _variable("DJANGO_DEBUG", False, _BOOLEAN)
    secret_key: Annotated[str, _EMPTY_IS_UNSET] = _variable("DJANGO_SECRET_KEY", _DEV_SECRET, "a secret string")
    allowed_hosts: Names = _variable("ALLOWED_HOSTS", ("localhost", "127.0.0.1", "[::1]"), "comma-separated host names")
    mongo_url: MongoUrl = _variable("MONGO_URL", None, "a URL that starts with mongodb:// or mongodb+srv://")
    # Accounts and sessions (Django's ORM); unset: a SQLite file under VAR_DIR/accounts/.
    database_url: DatabaseUrl = _variable(
        "DATABASE_URL", None, "a URL that starts with postgres://, postgresql:// or sqlite:///"
    )
    registration: Literal["open", "approval", "closed"] = _variable(
        "REGISTRATION", "approval", "open, approval or closed"
    )
    var_dir: Folder = _variable("VAR_DIR", REPO_ROOT / "var", "a folder")
    model_registry: Folder = _variable("MODEL_REGISTRY", REPO_ROOT / "models" / "registry.toml", "a file path")
    # Set by the launcher when both models run on the CPU: the file through which the apps
    # split the cores step by step (webapp.engine.cpu_share). Unset: every step takes n_threads.
    cpu_share_file: Folder | None = _variable("CPU_SHARE_FILE", None, "a file path")
    personas_dir: Folder = _variable("PERSONAS_DIR", REPO_ROOT / "personas", "a folder")
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = _variable(
        "LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"
    )
    qdrant_url: HttpUrl = _variable("QDRANT_URL", None, "a URL that starts with http:// or https://")
    searxng_url: HttpUrl = _variable("SEARXNG_URL", None, "a URL that starts with http:// or https://")
    # Shared by the replicas of an app: the tools' rate limits and concurrency caps.
    # make run starts its own redis-server and sets it (a unix socket under VAR_DIR/run).
    redis_url: RedisUrl = _variable("REDIS_URL", None, "a URL that starts with redis://, rediss:// or unix://")
    # Sign-in tries (django-ratelimit, counted in Redis): per username from one address (and
    # 10x that from anywhere), per client address; sign-ups per client address.
    signin_rate_user: Rate = _variable("SIGNIN_RATE_PER_USERNAME", "5/5m", "a rate like 5/5m (count/period)")
    signin_rate_ip: Rate = _variable("SIGNIN_RATE_PER_IP", "30/5m", "a rate like 30/5m (count/period)")
    signup_rate_ip: Rate = _variable("SIGNUP_RATE_PER_IP", "10/h", "a rate like 10/h (count/period)")
    # Chat turns (REST, OpenAI, each WebSocket message), per account and per client address;
    # replies generated at once per account; tokens (prompt + completion) per account per UTC
    # day, 0 for no quota. An admin can set an account's own in Django admin. Uploads per account.
    turn_rate_account: Rate = _variable("TURN_RATE_PER_ACCOUNT", "30/m", "a rate like 30/m (count/period)")
    turn_rate_ip: Rate = _variable("TURN_RATE_PER_IP", "120/m", "a rate like 120/m (count/period)")
    generations_per_account: Annotated[int, Field(ge=1, le=1000), _EMPTY_IS_UNSET] = _variable(
        "GENERATIONS_PER_ACCOUNT", 4, "a whole number from 1 to 1000"
    )
    daily_token_quota: Annotated[int, Field(ge=0, le=10**12), _EMPTY_IS_UNSET] = _variable(
        "DAILY_TOKEN_QUOTA", 200_000, "a whole number of tokens, 0 for no quota"
    )
    upload_rate_account: Rate = _variable("UPLOAD_RATE_PER_ACCOUNT", "30/h", "a rate like 30/h (count/period)")
    tool_call_rate_account: Rate = _variable("TOOL_CALL_RATE_PER_ACCOUNT", "120/m", "a rate like 120/m (count/period)")
    security_mode: Literal["development", "production"] = _variable(
        "SECURITY_MODE", "development", "development or production"
    )
    drain_s: Annotated[float, Field(ge=0, le=300, allow_inf_nan=False), BeforeValidator(_seconds), _EMPTY_IS_UNSET] = (
        _variable("SHUTDOWN_DRAIN_S", 20.0, "seconds between 0 and 300")
    )

    @model_validator(mode="wrap")
    @classmethod
    def _secret_set_in_production(cls, data: Any, handler: ModelWrapValidatorHandler[Env]) -> Env:
        """PRODUCTION=true refuses the development secret key. PRODUCTION is read for nothing
        else, and (as always) only when the secret key is the development one."""
        env = handler(data)
        if env.secret_key == _DEV_SECRET and isinstance(data, Mapping):
            production = _flag(data.get("PRODUCTION") or False)
            if not isinstance(production, bool):
                raise PydanticCustomError(
                    "env", "PRODUCTION must be {accepts}, got {raw}", {"accepts": _BOOLEAN, "raw": repr(production)}
                )
            if production:
                raise PydanticCustomError("env", "DJANGO_SECRET_KEY must be set when PRODUCTION is true")
        return env


_ACCEPTS = {str(field.validation_alias): str(field.description) for field in Env.model_fields.values()}


def env_load(environ: Mapping[str, str] = os.environ) -> Env:
    """Read the service's settings from `environ`; raise EnvError naming a variable that is wrong."""
    variables = {name: environ[name] for name in (*_ACCEPTS, "PRODUCTION") if name in environ}
    try:
        return Env.model_validate(variables)
    except ValidationError as exc:
        raise EnvError("; ".join(_problem(error, variables) for error in exc.errors())) from exc


def _problem(error: ErrorDetails, variables: Mapping[str, str]) -> str:
    if not error["loc"]:  # a rule across variables: its message names them
        return error["msg"]
    name = str(error["loc"][0])
    return f"{name} must be {_ACCEPTS.get(name, 'valid')}, got {variables.get(name)!r}"
