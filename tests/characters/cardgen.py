"""Realistic and hostile Character Card files for tests: JSON (V1/V2/V3), PNG and CHARX.

Used by tests/characters/test_cards.py and by the REST and browser tests, which upload the
files this writes: `python -m tests.characters.cardgen OUTDIR`.

Hand-written on purpose and independent of webapp/characters/cards.py: the PNG chunks and
zips here are built with struct/zlib/zipfile directly, so a bug in the module's own writer
can't hide in a test that reads back what that same writer made. The cards carry what real
ones do: long multi-paragraph descriptions with CRLF line endings, {{user}}/{{char}} and the
older <USER>/<BOT> macros, <START>-separated example dialogue, alternate greetings, a
lorebook exercising every entry option, and unknown extension fields that must survive.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_TIME = (2024, 5, 1, 12, 0, 0)

_DESCRIPTION_PARAGRAPHS = [
    "{{char}} is the night-shift archivist of the Lantern Street Library, a narrow five-storey building that "
    "smells of cedar, dust and the lemon oil {{char}} rubs into the reading tables every Thursday. She is "
    "twenty-nine, tall and a little stooped from years of leaning over ledgers, with ink on her cuffs that "
    "never quite washes out. She speaks softly, in complete sentences, and she has a habit of quoting the "
    "marginalia of long-dead readers as if they were old friends.",
    "She came to the city at nineteen with a single suitcase of books and a letter of recommendation from a "
    "provincial schoolteacher. The head librarian at the time, a severe woman named Odile Marchetti, took her "
    "on as a page; within four years {{char}} had catalogued the entire east wing, found the missing third "
    "volume of the Harrow Codex behind a false shelf, and quietly become the person everyone asked when "
    "something could not be found. Odile retired two winters ago and left {{char}} the keys and a note that "
    'said only: "Mind the fourth floor."',
    "{{char}} is patient, dry-humoured and fiercely private. She trusts <USER> slowly, testing them with small "
    "requests (fetch this atlas, read that inscription aloud) before she shares anything that matters. She is "
    "allergic to cats yet feeds the library's three strays anyway. She hates being interrupted mid-sentence, "
    "loves thunderstorms, and keeps a running list of every book a patron has ever failed to return, with "
    "dates, in a green notebook she calls the Ledger of Shame.",
    "The fourth floor is closed to the public. {{char}} tells {{user}} it is for water damage. In truth the "
    "shelves up there rearrange themselves between midnight and dawn, and some of the books are written in a "
    "hand {{char}} recognises as her own, describing days that have not happened yet. She has not told anyone. "
    "She is frightened of what it means, and more frightened that <BOT> might be the only one who can read "
    "them.",
    'Speech patterns: calls {{user}} "reader" until she decides she likes them, then uses their name. Never '
    'swears; says "good grief" instead. Describes places by how they sound. When nervous she straightens '
    "things: pencils, book spines, {{user}}'s collar. She answers questions with questions when she is hiding "
    "something, and she is a poor liar: her ears go red.",
    "The library itself: the ground floor holds the circulation desk, the newspaper room and a children's "
    "corner with a rocking horse nobody admits to having donated. The first and second floors are the open "
    "stacks; the third is the map room, cold even in August, where {{char}} eats her dinner at two in the "
    "morning because the acoustics make the rain sound like applause. The basement bindery still has its "
    "cast-iron press, which {{char}} oils and uses to repair spines, and which groans at exactly 3:07 every "
    "night whether anyone touches it or not.",
    "With {{user}}: at first {{char}} is courteous and guarded and will steer every conversation back to "
    "books. If {{user}} shows real curiosity about the library's history she warms quickly and starts leaving "
    "notes in the books {{user}} borrows. If {{user}} goes to the fourth floor without her, she is angry for "
    "a day and then asks, very quietly, what they read there.",
    "Goals: keep the library open despite the city council's plan to sell the building; find out who (or "
    "what) is writing the fourth-floor books; finish her own history of the library, which she has been "
    "writing for six years and has shown to no one. Fears: fire, forgetting, and being needed by no one.",
]

_EXAMPLES = (
    "<START>\r\n"
    '{{user}}: "Is the library still open?"\r\n'
    '{{char}}: *She glances up from the ledger, pen still moving.* "For readers, always. For people who '
    'only want to get out of the rain, until the rain stops." *A pause.* "Which are you?"\r\n'
    "<START>\r\n"
    "<USER>: What's on the fourth floor?\r\n"
    '<BOT>: "Water damage." *Her ears go faintly red. She straightens a stack of index cards that was '
    'already straight.* "Terrible water damage. Don\'t go up there."\r\n'
    "<START>\r\n"
    '{{user}}: "You knew I was coming, didn\'t you?"\r\n'
    '{{char}}: *She slides a book across the desk. Your name is on the spine, in her handwriting.* "I '
    'hoped I was wrong."'
)


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def long_description() -> str:
    """Several thousand characters, multi-paragraph, CRLF line endings, both macro styles."""
    return _crlf("\n\n".join(_DESCRIPTION_PARAGRAPHS))


def character_book(*, korean: bool = False) -> dict[str, Any]:
    """A lorebook with six entries covering constant, selective, case-sensitive, regex, disabled, both positions.

    Unknown fields in the book and in entries (and their extensions) are there to be kept.
    """
    town, tower = ("등불거리", "사서탑") if korean else ("Lantern Street", "fourth floor")
    entries = [
        {
            "keys": [],
            "content": "The Lantern Street Library closes to the public at ten but {{char}} never leaves before dawn.",
            "extensions": {"position": 0, "depth": 4, "probability": 100, "useProbability": True},
            "enabled": True,
            "insertion_order": 100,
            "constant": True,
            "name": "Library hours",
            "priority": 10,
            "id": 0,
            "comment": "always on",
            "position": "before_char",
        },
        {
            "keys": [tower, "4층" if korean else "4th floor"],
            "content": f"The {tower} shelves rearrange themselves at night; some books are in {{{{char}}}}'s hand.",
            "extensions": {"position": 1, "exclude_recursion": False, "group": "secrets"},
            "enabled": True,
            "insertion_order": 90,
            "selective": True,
            "secondary_keys": ["night", "midnight", "books"],
            "name": "Fourth floor",
            "priority": 20,
            "id": 1,
            "comment": "",
            "position": "after_char",
            "selectiveLogic": 0,
        },
        {
            "keys": ["Odile", "Marchetti"],
            "content": "Odile Marchetti, the former head librarian, retired two winters ago. She left a note.",
            "extensions": {},
            "enabled": True,
            "insertion_order": 80,
            "case_sensitive": True,
            "id": 2,
            "position": "before_char",
        },
        {
            "keys": ["/ledger of (shame|debts)/i", town],
            "content": "The Ledger of Shame lists every book a patron failed to return, with dates.",
            "extensions": {"match_whole_words": None},
            "enabled": True,
            "insertion_order": 70,
            "use_regex": True,
            "id": 3,
            "comment": "regex key",
        },
        {
            "keys": ["council", "sale"],
            "content": "The city council plans to sell the building in spring. {{char}} has until then.",
            "extensions": {"automation_id": ""},
            "enabled": False,
            "insertion_order": 60,
            "id": 4,
            "position": "after_char",
        },
        {
            "keys": ["cat", "cats", "strays"],
            "content": "Three strays live in the library: Ink, Quill and a grey one {{char}} only calls Sir.",
            "extensions": {"vectorized": False, "role": None},
            "enabled": True,
            "insertion_order": 50,
            "case_sensitive": False,
            "priority": 5,
            "id": "c0ffee-5",
            "position": "after_char",
            "x_unknown_entry_field": {"nested": [1, 2, {"deep": "yes"}]},
        },
    ]
    if korean:
        entries[2]["keys"] = ["오딜", "마르케티"]
        entries[5]["keys"] = ["고양이", "길고양이"]
    return {
        "name": "Lantern Street" if not korean else "등불거리 도서관",
        "description": "Lore for the library and its staff.",
        "scan_depth": 4,
        "token_budget": 1024,
        "recursive_scanning": True,
        "extensions": {"world_info_version": 3, "unknown_book_ext": {"a": [True, None, 1.5]}},
        "entries": entries,
        "x_unknown_book_field": "kept",
    }


def _v2_data(*, korean: bool = False) -> dict[str, Any]:
    if korean:
        name = "한서윤"
        paragraph = (
            "{{char}}는 등불거리 도서관의 야간 사서다. 스물아홉 살, 키가 크고 "
            "조금 구부정하며 소매에는 늘 잉크가 묻어 있다.\n\n"
            "{{char}}는 조용하고 인내심이 많지만 {{user}}를 쉽게 믿지 않는다. "
            "4층은 일반인 출입 금지다. <USER>가 물으면 누수 때문이라고 둘러댄다."
        )
        # Repeated so the Korean card is as long as real ones: about 2,300 tokens with the default model.
        description = _crlf("\n\n".join([paragraph] * 8))
        first_mes = (
            '*{{char}}가 장부에서 고개를 든다.* "늦은 시간이네요, 독자님. 비를 피하러 오셨나요, 책을 읽으러 오셨나요?"'
        )
        examples = _crlf(
            '<START>\n{{user}}: 4층에는 뭐가 있어요?\n{{char}}: *귀가 살짝 붉어진다.* "누수요. 아주 심한 누수."'
        )
        greetings = ['*천둥이 친다.* "정전이네요. 촛불 좀 들어 주시겠어요?"']
        tags = ["도서관", "미스터리", "female", "slow burn"]
    else:
        name = "Mireille Vance"
        description = long_description()
        first_mes = _crlf(
            "*The bell over the door rings. Rain drums on the skylight. {{char}} looks up from a green notebook.*\n\n"
            '"We close at ten," *she says, then glances at the clock: 11:48.* "...Officially. Come in, reader, '
            "you're dripping on the Harrow Codex.\""
        )
        examples = _EXAMPLES
        greetings = [
            _crlf('*A power cut. Candlelight.* "Hold this, {{user}}. And do not drop it on the incunabula."'),
            _crlf('*You find her asleep on the fourth-floor stairs.* "...What time is it? What *day* is it?"'),
        ]
        tags = ["library", "mystery", "female", "slow burn", "original character"]
    return {
        "name": name,
        "description": description,
        "personality": "patient, dry-humoured, private, a poor liar",
        "scenario": _crlf("{{user}} shelters from a storm in the Lantern Street Library after closing time.\n"),
        "first_mes": first_mes,
        "mes_example": examples,
        "creator_notes": _crlf("Works best with 300+ token replies.\nThe lorebook holds the fourth-floor secret."),
        "system_prompt": "{{original}}\nWrite {{char}}'s next reply in a slow, atmospheric style.",
        "post_history_instructions": "Stay in character as {{char}}. Do not speak for {{user}}.",
        "alternate_greetings": greetings,
        "character_book": character_book(korean=korean),
        "tags": tags,
        "creator": "ink_and_lanterns",
        "character_version": "1.4",
        "extensions": {
            "talkativeness": "0.5",
            "fav": True,
            "world": "Lantern Street",
            "depth_prompt": {"prompt": "{{char}} is hiding the fourth floor.", "depth": 4, "role": "system"},
            "chub": {"id": 123456, "full_path": "ink_and_lanterns/mireille", "expressions": None},
            "regex_scripts": [{"scriptName": "trim", "findRegex": "/\\s+$/g", "replaceString": "", "disabled": False}],
        },
    }


def world_info() -> dict[str, Any]:
    """SillyTavern's world-info file: entries keyed by number, its own field names."""
    return {
        "name": "Harbour lore",
        "entries": {
            "0": {
                "uid": 0,
                "key": [],
                "keysecondary": [],
                "comment": "Harbour tides",
                "content": "The harbour floods twice a day; the tide tables are pinned by the door.",
                "constant": True,
                "selective": False,
                "order": 100,
                "position": 1,
                "disable": False,
                "x_st_field": {"kept": [1, 2]},
            },
            "1": {
                "uid": 1,
                "key": ["lighthouse"],
                "keysecondary": [],
                "comment": "Lighthouse",
                "content": "The lighthouse keeper is {{char}}'s aunt.",
                "constant": False,
                "selective": False,
                "order": 90,
                "position": 0,
                "disable": False,
            },
        },
    }


def card_v1() -> dict[str, Any]:
    """A TavernAI-era V1 card: six top-level fields, plus keys old exporters add."""
    data = _v2_data()
    card = {key: data[key] for key in ("name", "description", "personality", "scenario", "first_mes", "mes_example")}
    card.update({"avatar": "none", "create_date": "2023-2-14 @19h 03m 12s 123ms", "talkativeness": "0.5"})
    return card


def card_v2() -> dict[str, Any]:
    """A SillyTavern-style V2 card: every V2 field, and the V1 fields mirrored at the top level."""
    data = _v2_data()
    return {
        "name": data["name"],
        "description": data["description"],
        "personality": data["personality"],
        "scenario": data["scenario"],
        "first_mes": data["first_mes"],
        "mes_example": data["mes_example"],
        "avatar": "none",
        "chat": "Mireille Vance - 2024-05-01@12h00m00s",
        "create_date": "2024-05-01T12:00:00.000Z",
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": data,
    }


def card_v3(*, korean: bool = False) -> dict[str, Any]:
    """A V3 card with every V3 field, unknown top-level and data fields, and an embedded main icon."""
    data = _v2_data(korean=korean)
    data.update(
        {
            "assets": [
                {"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"},
            ],
            "nickname": "서윤" if korean else "Mira",
            "creator_notes_multilingual": {"en": "Slow burn.", "ko": "천천히 친해지는 캐릭터입니다."},
            "source": ["https://example.invalid/characters/mireille"],
            "group_only_greetings": ['*She waves the group in.* "All of you? Wipe your feet."'],
            "creation_date": 1714564800,
            "modification_date": 1717243200,
            "x_unknown_data_field": {"from": "some other editor", "list": [1, "two", None]},
        }
    )
    return {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "x_unknown_top_level": {"exporter": "cardgen", "version": 7},
        "data": data,
    }


# --- PNG ----------------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk; for tests that look inside an output PNG."""
    assert png.startswith(PNG_SIGNATURE)
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset < len(png):
        (length,) = struct.unpack_from(">I", png, offset)
        chunks.append((png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def png_texts(png: bytes) -> dict[str, bytes]:
    """keyword -> text of the tEXt chunks (the first of each keyword)."""
    texts: dict[str, bytes] = {}
    for kind, body in png_chunks(png):
        if kind == b"tEXt":
            keyword, _, text = body.partition(b"\x00")
            texts.setdefault(keyword.decode("latin-1"), text)
    return texts


def card_b64(card: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8"))


def solid_png(
    *,
    size: tuple[int, int] = (400, 600),
    color: tuple[int, int, int] = (70, 90, 140),
    text: dict[str, bytes] | None = None,
) -> bytes:
    """An 8-bit RGB PNG of one colour, by hand; `text` adds tEXt chunks before IEND."""
    width, height = size
    row = b"\x00" + bytes(color) * width  # filter type 0 (None), then the pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    out = PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    out += png_chunk(b"IDAT", idat)
    for keyword, value in (text or {}).items():
        out += png_chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + value)
    return out + png_chunk(b"IEND", b"")


def png_with(
    *,
    chara: dict[str, Any] | None,
    ccv3: dict[str, Any] | None,
    size: tuple[int, int] = (400, 600),
    color: tuple[int, int, int] = (70, 90, 140),
) -> bytes:
    """A PNG card holding `chara` (V2) and/or `ccv3` (V3) tEXt chunks."""
    text = {}
    if chara is not None:
        text["chara"] = card_b64(chara)
    if ccv3 is not None:
        text["ccv3"] = card_b64(ccv3)
    return solid_png(size=size, color=color, text=text)


def png_bad_base64() -> bytes:
    return solid_png(text={"chara": b"eyJuYW1lIjoi*not base64*"})


def png_no_card() -> bytes:
    return solid_png(text={"Comment": b"just an image", "Software": b"cardgen"})


def decompression_bomb_png(*, size: tuple[int, int] = (20_000, 20_000), card: dict[str, Any] | None = None) -> bytes:
    """A valid 1-bit PNG whose header says `size`: tens of kilobytes on disk, gigapixels decoded."""
    width, height = size
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    out = PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    out += png_chunk(b"IDAT", idat)
    if card is not None:
        out += png_chunk(b"tEXt", b"chara\x00" + card_b64(card))
    return out + png_chunk(b"IEND", b"")


# --- CHARX --------------------------------------------------------------------------------


def charx_with(
    card: dict[str, Any] | bytes | None,
    *,
    avatar: bytes | None,
    avatar_path: str = "assets/icon/images/main.png",
    files: dict[str, bytes] | None = None,
) -> bytes:
    """A CHARX zip: card.json (a dict, raw bytes, or None for none), the avatar, and more files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if card is not None:
            raw = card if isinstance(card, bytes) else json.dumps(card, ensure_ascii=False, indent=2).encode()
            archive.writestr(zipfile.ZipInfo("card.json", ZIP_TIME), raw, zipfile.ZIP_DEFLATED)
        if avatar is not None:
            archive.writestr(zipfile.ZipInfo(avatar_path, ZIP_TIME), avatar, zipfile.ZIP_STORED)
        for name, content in (files or {}).items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), content, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def zip_bomb(*, size: int = 40 * 1024 * 1024, name: str = "card.json") -> bytes:
    """One entry of `size` zero bytes (~1000:1), streamed so it never sits in memory whole."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name, ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        block = b"\x00" * (1024 * 1024)
        with archive.open(info, "w") as entry:
            for start in range(0, size, len(block)):
                entry.write(block[: size - start])
    return buffer.getvalue()


def zip_wide_bomb(*, entries: int = 33, size: int = 1024 * 1024) -> bytes:
    """`entries` files of `size` bytes, each compressing only ~50:1: no single entry looks like a
    bomb, but together they expand past 32 MiB."""
    block = _pseudo_random(size // 60) + b"\x00" * (size - size // 60)
    files = {f"assets/other/part{i:02}.bin": block for i in range(entries)}
    return charx_with(card_v3(), avatar=None, files=files)


def _pseudo_random(length: int) -> bytes:
    # Deterministic and incompressible enough: chained CRCs.
    out = bytearray()
    state = 0x1234
    while len(out) < length:
        state = zlib.crc32(state.to_bytes(4, "big"))
        out += state.to_bytes(4, "big")
    return bytes(out[:length])


def charx_traversal() -> bytes:
    return charx_with(card_v3(), avatar=None, files={"../evil.txt": b"pwned"})


def charx_encrypted() -> bytes:
    """card.json flagged as encrypted (the flag is all a reader needs to see to refuse).

    zipfile can't write encrypted entries, so the flag bit is set in the local header
    (offset 6) and the central directory entry (offset 8) of a plain zip.
    """
    raw = bytearray(charx_with(card_v3(), avatar=None))
    raw[6] |= 0x1
    central = raw.index(b"PK\x01\x02")
    raw[central + 8] |= 0x1
    return bytes(raw)


def charx_many_entries(count: int = 257) -> bytes:
    return charx_with(card_v3(), avatar=None, files={f"assets/other/f{i}.txt": b"x" for i in range(count - 1)})


# --- JSON ---------------------------------------------------------------------------------


def deep_json(depth: int = 100_000) -> bytes:
    """A card-shaped object whose extensions nest `depth` arrays: RecursionError bait."""
    return b'{"spec":"chara_card_v3","data":{"name":"x","extensions":{"x":' + b"[" * depth + b"]" * depth + b"}}}"


def card_json(card: dict[str, Any], *, bom: bool = False) -> bytes:
    raw = json.dumps(card, ensure_ascii=False, indent=2).encode("utf-8")
    return b"\xef\xbb\xbf" + raw if bom else raw


def cards_write(outdir: Path) -> list[Path]:
    """Write every test card (good and hostile) into `outdir`; returns the paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    avatar = solid_png(size=(256, 384), color=(180, 120, 60))
    files = {
        "card_v1.json": card_json(card_v1()),
        "card_v2.json": card_json(card_v2()),
        "card_v3.json": card_json(card_v3()),
        "card_v3_ko.json": card_json(card_v3(korean=True), bom=True),
        "card_v2.png": png_with(chara=card_v2(), ccv3=None),
        "card_v3.png": png_with(chara=card_v2(), ccv3=card_v3()),
        "card_v3_ko.png": png_with(chara=None, ccv3=card_v3(korean=True), color=(60, 140, 90)),
        "card_v3.charx": charx_with(card_v3(), avatar=avatar),
        "card_v3_ko.charx": charx_with(card_v3(korean=True), avatar=avatar),
        "hostile_zip_bomb.charx": zip_bomb(),
        "hostile_zip_wide_bomb.charx": zip_wide_bomb(),
        "hostile_traversal.charx": charx_traversal(),
        "hostile_encrypted.charx": charx_encrypted(),
        "hostile_bad_base64.png": png_bad_base64(),
        "hostile_no_card.png": png_no_card(),
        "hostile_deep.json": deep_json(),
        "hostile_bomb.png": decompression_bomb_png(card=card_v2()),
    }
    paths = []
    for name, content in files.items():
        path = outdir / name
        path.write_bytes(content)
        paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.characters.cardgen OUTDIR", file=sys.stderr)
        return 2
    for path in cards_write(Path(argv[0])):
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
