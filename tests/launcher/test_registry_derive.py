"""registry_derive: the derived registry keeps every key of the source, with absolute paths and the overrides."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from webapp.engine.registry import APPS, embedding_spec_load, registry_load
from webapp.launcher.stack import registry_derive

# Quotes, backslashes, newlines, Jinja and non-ASCII: everything an f-string TOML writer gets wrong.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m[\"content\"] }}<|im_end|>\n{% endfor %}"
    '{{ "\\\\n" }}\t안녕 """ \'\'\' \\u0041'
)


def source_registry(folder: Path) -> Path:
    """A registry with relative paths to stand-in GGUF files, a chat template and every optional key."""
    models = folder / "models"
    models.mkdir()
    for name in ("chat.gguf", "embed.gguf"):
        (models / name).write_bytes(b"GGUF\x03\x00\x00\x00")
    registry = models / "registry.toml"
    basic = CHAT_TEMPLATE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    registry.write_text(
        f"""
[office]
alias = "tiny-office"
path = "chat.gguf"
package = "no_such_package"
n_ctx = 1024
n_gpu_layers = -1
gpu = 1
n_threads = 3
slots = 4
batch_tokens = 256
prefill_chunk = 128
max_wait_s = 30
max_generation_s = 60.5
chat_template = "{basic}"

[office.sampling]
temperature = 0.2
top_p = 0.9
top_k = 20
min_p = 0.1
repeat_penalty = 1.3
max_tokens = 300

[character]
alias = "tiny-character"
path = "chat.gguf"
n_ctx = 512

[embedding]
alias = "tiny-embed"
kind = "gguf"
path = "embed.gguf"
languages = ["en", "ko"]
max_tokens = 128
n_gpu_layers = 2
min_similarity = 0.3
""",
        encoding="utf-8",
    )
    return registry


def test_chat_template_survives_registry_derive(tmp_path: Path) -> None:
    source = source_registry(tmp_path)
    assert registry_load(source)["office"].chat_template == CHAT_TEMPLATE  # the fixture itself is right

    derived = registry_derive(source, tmp_path / "derived" / "registry.toml")

    specs = registry_load(derived)
    assert specs["office"].chat_template == CHAT_TEMPLATE
    assert specs["character"].chat_template is None


def test_derived_registry_keeps_every_key_with_absolute_paths(tmp_path: Path) -> None:
    source = source_registry(tmp_path)
    derived = registry_derive(source, tmp_path / "elsewhere" / "registry.toml")

    before, after = registry_load(source), registry_load(derived)
    for app in APPS:
        assert after[app] == dataclasses.replace(before[app], path=before[app].path.resolve())
    assert after["office"].package == "no_such_package"
    assert after["office"].n_threads == 3
    assert embedding_spec_load(derived) == dataclasses.replace(
        embedding_spec_load(source), path=(tmp_path / "models" / "embed.gguf").resolve()
    )
    written = tomllib.loads(derived.read_text(encoding="utf-8"))
    for table in (written["office"], written["character"], written["embedding"]):
        assert Path(table["path"]).is_absolute()


def test_overrides_replace_only_their_keys(tmp_path: Path) -> None:
    source = source_registry(tmp_path)
    derived = registry_derive(
        source,
        tmp_path / "derived.toml",
        max_tokens=16,
        temperature=0.0,
        slots=2,
        max_wait_s=1000.0,
        ignore_eos=True,
        max_generation_s=5.0,
    )

    before, after = registry_load(source), registry_load(derived)
    for app in APPS:
        sampling = dataclasses.replace(before[app].sampling, max_tokens=16, temperature=0.0, ignore_eos=True)
        expected = dataclasses.replace(
            before[app],
            path=before[app].path.resolve(),
            slots=2,
            max_wait_s=1000.0,
            max_generation_s=5.0,
            sampling=sampling,
        )
        assert after[app] == expected
