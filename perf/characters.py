"""Benchmark: what a character card adds to a turn before the model sees it, and what an import costs.

A turn with a card binds its macros, scans its lorebook and lays out the prompt with a
token count per part (webapp.characters.library, webapp.chat.assembly). This times those
steps, in-process with the default model's tokenizer, for:

- a built-in persona (personas/character/captain-rhea.toml): the peer;
- the test card of tests/characters/cardgen (~900 tokens of definition, 6 lore entries);
- the same card with a 500-entry lorebook (3 keys each), and with a book at the card
  limits (2,000 entries of 100 keys: the worst a card may bring);

and, for imports, `card_read` of that card as JSON, as a PNG card and as a 5.6 MB PNG
card with a 1,400 px noisy picture (re-encoded to 1,024 px). Prints a table of p50 and
p95 in ms and the ratio of each turn row's p50 to the peer's; writes var/perf/characters.md.

    .venv/bin/python -m perf.characters [--repeats 30]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.config.settings")
os.environ.setdefault("APP_MODE", "character")
django.setup()

from perf import table_publish  # noqa: E402
from webapp.characters import cards  # noqa: E402
from webapp.characters.library import persona_from_card  # noqa: E402
from webapp.chat.assembly import layout_first  # noqa: E402
from webapp.chat.personas import ChatScope, Persona, catalog_load  # noqa: E402
from webapp.config.env import REPO_ROOT  # noqa: E402
from webapp.engine.prompt import ChatMessage  # noqa: E402
from webapp.engine.registry import registry_load  # noqa: E402

N_CTX = 4096
MAX_TOKENS = 256


def _tokenizer() -> Callable[[str], int]:
    import llama_cpp

    spec = registry_load(REPO_ROOT / "models" / "registry.toml")["character"]
    model = llama_cpp.Llama(model_path=str(spec.path), vocab_only=True, verbose=False)
    return lambda text: len(model.tokenize(text.encode(), add_bos=False, special=True))


def _book(entries: int, keys: int) -> dict[str, Any]:
    rnd = random.Random(7)  # noqa: S311 - reproducible test data

    def word() -> str:
        return "".join(rnd.choice(string.ascii_lowercase) for _ in range(8))

    return {
        "name": f"{entries} entries",
        "entries": [
            {"keys": [word() for _ in range(keys)], "content": f"Entry {i}.", "enabled": True, "insertion_order": i}
            for i in range(entries)
        ],
        "extensions": {},
    }


def _turn(persona: Persona, count: Callable[[str], int], history: list[ChatMessage]) -> Callable[[], object]:
    now = datetime.now(UTC)
    scope = ChatScope(owner="", user_name="Ari", seed="bench", started_at=now, now=now)
    user = ChatMessage("user", "Are there any cats in the library tonight?")

    def run() -> object:
        bound = persona.bind(scope)
        lore = bound.lore([*(m.content for m in history), user.content], count) if bound.lore else ()
        layout = layout_first(
            bound, lore=lore, history=history, user=user, count_tokens=count, n_ctx=N_CTX, max_tokens=MAX_TOKENS
        )
        return layout.budget(persona=bound, count_tokens=count)

    return run


def _timed_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm: caches, first tokenizations
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return sorted(times)


def _p(times: list[float], q: float) -> float:
    return times[min(len(times) - 1, int(q * len(times)))]


def _big_png_card(card: dict[str, Any]) -> bytes:
    from PIL import Image

    from tests.characters import cardgen

    noise = random.Random(3).randbytes(1400 * 1400 * 3)  # noqa: S311 - reproducible test data
    picture = Image.frombytes("RGB", (1400, 1400), noise)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    chunks = [cardgen.png_chunk(k, d) for k, d in cardgen.png_chunks(buffer.getvalue()) if k != b"IEND"]
    chunks.append(cardgen.png_chunk(b"tEXt", b"ccv3\x00" + cardgen.card_b64(card)))
    return cardgen.PNG_SIGNATURE + b"".join(chunks) + cardgen.png_chunk(b"IEND", b"")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    from tests.characters import cardgen

    count = _tokenizer()
    history = [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"Message {i} about the rain and the old books.")
        for i in range(12)
    ]
    builtin = catalog_load(REPO_ROOT / "personas", "character").get("captain-rhea")
    assert builtin is not None
    card = cardgen.card_v3()
    data = cards.card_data_check(card["data"])
    turns = {
        "built-in persona (peer)": builtin,
        "card, its 6-entry lorebook": persona_from_card("c-bench", data),
        "card + 500 entries x 3 keys": persona_from_card("c-bench", {**data, "character_book": _book(500, 3)}),
        "card + 2,000 entries x 100 keys (the limit)": persona_from_card(
            "c-bench", {**data, "character_book": _book(2000, 100)}
        ),
    }
    rows: list[tuple[str, float, float, str]] = []
    peer = 0.0
    for name, persona in turns.items():
        repeats = max(3, args.repeats // 10) if "limit" in name else args.repeats
        times = _timed_ms(_turn(persona, count, history), repeats)
        p50 = statistics.median(times)
        peer = peer or p50
        rows.append((f"turn: {name}", p50, _p(times, 0.95), f"{p50 / peer:.1f}x"))
    imports = {
        "import: card as JSON": cardgen.card_json(card),
        "import: PNG card (400x600 picture)": cardgen.png_with(chara=cardgen.card_v2(), ccv3=card),
        "import: 5.6 MB PNG card (1,400 px noise)": _big_png_card(card),
    }
    for name, content in imports.items():
        times = _timed_ms(lambda content=content: cards.card_read(content), max(5, args.repeats // 3))
        rows.append((f"{name} ({len(content) / 2**20:.2f} MiB)", statistics.median(times), _p(times, 0.95), ""))

    lines = [
        "| step | p50 ms | p95 ms | p50 / peer |",
        "|---|---|---|---|",
        *(f"| {name} | {p50:.2f} | {p95:.2f} | {ratio} |" for name, p50, p95, ratio in rows),
    ]
    table = "\n".join(lines)
    table_publish("characters", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
