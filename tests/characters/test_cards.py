"""Character Cards: reading V1/V2/V3 JSON, PNG and CHARX; writing them back; refusing hostile files.

Pure and fast: no server, no database. The test files come from tests/characters/cardgen.py,
whose PNG and zip writers are independent of the module's own.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import socket
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from tests.characters import cardgen
from webapp.characters import cards
from webapp.characters.cards import (
    MAX_CARD_FILE_BYTES,
    V3_ONLY_FIELDS,
    CardError,
    CardTooLargeError,
    ParsedCard,
    card_charx,
    card_data_check,
    card_from_object,
    card_png,
    card_read,
    card_v2,
    card_v3,
    image_reencode,
)


def _image(content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


def _b64_json(text: bytes) -> Any:
    return json.loads(base64.b64decode(text, validate=True).decode("utf-8"))


def _with(card: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `card` with the value at a dotted path ("data.tags.3") replaced."""
    card = copy.deepcopy(card)
    *parents, last = path.split(".")
    node: Any = card
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return card


# --- JSON ---------------------------------------------------------------------------------


def test_v1_json_maps_the_six_fields_and_keeps_the_rest_in_extra() -> None:
    v1 = cardgen.card_v1()
    parsed = card_read(cardgen.card_json(v1))
    assert parsed.source == "v1"
    assert parsed.avatar is None
    for key in ("name", "description", "personality", "scenario", "first_mes", "mes_example"):
        assert parsed.data[key] == v1[key]
    assert parsed.data["description"].count("\r\n") > 10  # CRLF kept as it came
    assert parsed.extra == {"avatar": "none", "create_date": v1["create_date"], "talkativeness": "0.5"}
    # Everything else is defaulted, and every V3 field is present.
    assert parsed.data["alternate_greetings"] == []
    assert parsed.data["extensions"] == {}
    assert parsed.data["character_book"] is None
    assert parsed.data["creator_notes_multilingual"] == {}
    assert parsed.data["nickname"] == ""
    assert parsed.data.keys() >= V3_ONLY_FIELDS


def test_v2_json_reads_as_v3_and_card_v2_gives_the_input_back() -> None:
    v2 = cardgen.card_v2()
    parsed = card_read(cardgen.card_json(v2))
    assert parsed.source == "v2"
    assert parsed.data["group_only_greetings"] == []
    assert parsed.data["assets"] == []
    assert parsed.data["character_book"] == v2["data"]["character_book"]
    assert parsed.extra["chat"] == v2["chat"]
    assert card_v2(data=parsed.data, extra=parsed.extra) == v2
    v3 = card_v3(data=parsed.data, extra=parsed.extra)
    assert v3["spec"] == "chara_card_v3"
    assert v3["spec_version"] == "3.0"
    assert v3["data"]["extensions"] == v2["data"]["extensions"]


def test_v3_json_round_trips_unknown_fields_extensions_and_lorebook() -> None:
    v3 = cardgen.card_v3()
    parsed = card_read(cardgen.card_json(v3))
    assert parsed.source == "v3"
    assert parsed.extra == {"x_unknown_top_level": {"exporter": "cardgen", "version": 7}}
    assert parsed.data["x_unknown_data_field"] == {"from": "some other editor", "list": [1, "two", None]}
    book = parsed.data["character_book"]
    assert book["x_unknown_book_field"] == "kept"
    assert book["entries"][5]["x_unknown_entry_field"] == {"nested": [1, 2, {"deep": "yes"}]}
    assert book["entries"][1]["selectiveLogic"] == 0
    assert parsed.data["extensions"]["depth_prompt"]["depth"] == 4
    assert card_v3(data=parsed.data, extra=parsed.extra) == v3


def test_json_with_a_bom_is_read() -> None:
    parsed = card_read(cardgen.card_json(cardgen.card_v3(), bom=True))
    assert parsed.data["name"] == "Mireille Vance"


def test_card_from_object_reads_a_decoded_card() -> None:
    parsed = card_from_object(cardgen.card_v2())
    assert isinstance(parsed, ParsedCard)
    assert (parsed.source, parsed.avatar, parsed.data["creator"]) == ("v2", None, "ink_and_lanterns")


def test_null_known_fields_on_import_read_as_absent() -> None:
    v2 = cardgen.card_v2()
    v2["data"].update({"creator": None, "tags": None, "character_book": None})
    parsed = card_from_object(v2)
    assert (parsed.data["creator"], parsed.data["tags"], parsed.data["character_book"]) == ("", [], None)


def test_korean_card_keeps_its_text_through_json_and_png() -> None:
    v3 = cardgen.card_v3(korean=True)
    parsed = card_read(cardgen.card_json(v3, bom=True))
    assert parsed.data["name"] == "한서윤"
    assert parsed.data["character_book"]["entries"][2]["keys"] == ["오딜", "마르케티"]
    assert card_v3(data=parsed.data, extra=parsed.extra) == v3
    png = card_png(data=parsed.data, extra=parsed.extra, avatar=None)
    texts = cardgen.png_texts(png)
    assert _b64_json(texts["ccv3"])["data"]["first_mes"] == v3["data"]["first_mes"]
    assert _b64_json(texts["chara"])["data"]["name"] == "한서윤"
    again = card_read(png)
    assert again.data == parsed.data
    assert again.data["character_book"]["entries"][5]["keys"] == ["고양이", "길고양이"]


# --- PNG ----------------------------------------------------------------------------------


def test_png_with_chara_only_reads_v2_and_reencodes_the_image() -> None:
    parsed = card_read(cardgen.png_with(chara=cardgen.card_v2(), ccv3=None, color=(10, 200, 30)))
    assert parsed.source == "v2"
    assert parsed.data["name"] == "Mireille Vance"
    assert parsed.avatar is not None
    image = _image(parsed.avatar)
    assert (image.format, image.size, image.mode) == ("PNG", (400, 600), "RGB")
    assert image.getpixel((5, 5)) == (10, 200, 30)
    assert [kind for kind, _ in cardgen.png_chunks(parsed.avatar) if kind.startswith(b"t")] == []


def test_png_with_ccv3_only_reads_v3() -> None:
    parsed = card_read(cardgen.png_with(chara=None, ccv3=cardgen.card_v3()))
    assert parsed.source == "v3"
    assert parsed.data["nickname"] == "Mira"


def test_png_with_both_chunks_reads_ccv3() -> None:
    v2 = _with(cardgen.card_v2(), "data.name", "Old Name From Chara")
    v3 = _with(cardgen.card_v3(), "data.name", "New Name From Ccv3")
    parsed = card_read(cardgen.png_with(chara=v2, ccv3=v3))
    assert (parsed.source, parsed.data["name"]) == ("v3", "New Name From Ccv3")


def test_png_with_a_broken_ccv3_is_refused_even_when_chara_is_fine() -> None:
    png = cardgen.solid_png(text={"chara": cardgen.card_b64(cardgen.card_v2()), "ccv3": b"bm90IGpzb24="})
    with pytest.raises(CardError) as caught:
        card_read(png)
    assert caught.value.field == "ccv3"
    assert "JSON" in caught.value.message


def test_png_card_field_errors_say_which_chunk() -> None:
    png = cardgen.png_with(chara=None, ccv3=_with(cardgen.card_v3(), "data.tags", ["ok", 7]))
    with pytest.raises(CardError) as caught:
        card_read(png)
    assert caught.value.field == "data.tags[1]"
    assert caught.value.message == "in the ccv3 chunk: data.tags[1]: must be a string, not a number"


def test_png_base64_wrapped_in_newlines_is_read() -> None:
    encoded = cardgen.card_b64(cardgen.card_v2())
    wrapped = b"\n" + b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\n  "
    parsed = card_read(cardgen.solid_png(text={"chara": wrapped}))
    assert parsed.data["name"] == "Mireille Vance"


# --- CHARX --------------------------------------------------------------------------------


def test_charx_reads_card_json_and_its_main_icon() -> None:
    avatar = cardgen.solid_png(size=(256, 384), color=(180, 120, 60))
    parsed = card_read(cardgen.charx_with(cardgen.card_v3(), avatar=avatar))
    assert parsed.source == "v3"
    assert parsed.data["assets"] == cardgen.card_v3()["data"]["assets"]
    assert parsed.avatar is not None
    image = _image(parsed.avatar)
    assert image.size == (256, 384)
    assert image.getpixel((0, 0)) == (180, 120, 60)


def test_charx_accepts_the_corrected_embedded_spelling_and_falls_back_to_the_first_icon() -> None:
    card = _with(
        cardgen.card_v3(),
        "data.assets",
        [
            {"type": "background", "uri": "embedded://assets/bg.png", "name": "main", "ext": "png"},
            {"type": "icon", "uri": "embedded://assets/icon/happy.png", "name": "happy", "ext": "png"},
        ],
    )
    avatar = cardgen.solid_png(size=(30, 40))
    parsed = card_read(cardgen.charx_with(card, avatar=avatar, avatar_path="assets/icon/happy.png"))
    assert parsed.avatar is not None
    assert _image(parsed.avatar).size == (30, 40)


def test_charx_remote_and_default_icons_are_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("card_read opened a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    remote = {"type": "icon", "uri": "https://example.com/avatar.png", "name": "main", "ext": "png"}
    for asset in (remote, {**remote, "uri": "ccdefault:"}):
        parsed = card_read(cardgen.charx_with(_with(cardgen.card_v3(), "data.assets", [asset]), avatar=None))
        assert parsed.avatar is None
        assert parsed.data["assets"] == [asset]


def test_charx_avatar_that_is_not_an_image_refuses_the_card() -> None:
    with pytest.raises(CardError) as caught:
        card_read(cardgen.charx_with(cardgen.card_v3(), avatar=b"\x89PNG\r\n\x1a\nnot really"))
    assert (caught.value.field, caught.value.status) == ("avatar", 400)


# --- Writing ------------------------------------------------------------------------------


def test_png_export_has_both_chunks_as_base64_utf8_json() -> None:
    parsed = card_read(cardgen.card_json(cardgen.card_v3()))
    png = card_png(data=parsed.data, extra=parsed.extra, avatar=None)
    texts = cardgen.png_texts(png)
    assert _b64_json(texts["chara"]) == card_v2(data=parsed.data, extra=parsed.extra)
    assert _b64_json(texts["ccv3"]) == cardgen.card_v3()
    assert "assets" not in _b64_json(texts["chara"])["data"]
    image = _image(png)
    assert (image.format, image.size) == ("PNG", cards.PLACEHOLDER_SIZE)
    assert image.text["ccv3"] == texts["ccv3"].decode("ascii")  # Pillow reads our chunks too
    assert [kind for kind, _ in cardgen.png_chunks(png)][-1] == b"IEND"


def test_png_export_replaces_the_avatars_own_card_chunks() -> None:
    stale = cardgen.png_with(chara=_with(cardgen.card_v2(), "data.name", "Stale"), ccv3=cardgen.card_v3())
    parsed = card_read(cardgen.card_json(cardgen.card_v2()))
    png = card_png(data=parsed.data, extra=parsed.extra, avatar=stale)
    keywords = [body.split(b"\x00")[0] for kind, body in cardgen.png_chunks(png) if kind == b"tEXt"]
    assert sorted(keywords) == [b"ccv3", b"chara"]
    assert _b64_json(cardgen.png_texts(png)["chara"])["data"]["name"] == "Mireille Vance"


def test_png_export_round_trips_data_extra_and_avatar() -> None:
    avatar = card_read(cardgen.png_with(chara=None, ccv3=cardgen.card_v3(), size=(64, 96), color=(1, 2, 3))).avatar
    parsed = card_read(cardgen.card_json(cardgen.card_v3()))
    again = card_read(card_png(data=parsed.data, extra=parsed.extra, avatar=avatar))
    assert (again.source, again.data, again.extra) == ("v3", parsed.data, parsed.extra)
    assert again.avatar is not None
    assert _image(again.avatar).size == (64, 96)
    assert _image(again.avatar).getpixel((3, 3)) == (1, 2, 3)
    assert card_v3(data=again.data, extra=again.extra) == cardgen.card_v3()


def test_charx_export_round_trips_and_writes_the_avatar_as_the_main_icon() -> None:
    v3 = cardgen.card_v3()
    parsed = card_read(cardgen.card_json(v3))
    avatar = cardgen.solid_png(size=(50, 70), color=(9, 8, 7))
    charx = card_charx(data=parsed.data, extra=parsed.extra, avatar=avatar)
    with zipfile.ZipFile(io.BytesIO(charx)) as archive:
        assert sorted(archive.namelist()) == ["assets/icon/images/main.png", "card.json"]
        assert json.loads(archive.read("card.json")) == v3  # its assets already name the main icon
    again = card_read(charx)
    assert (again.data, again.extra) == (parsed.data, parsed.extra)
    assert again.avatar is not None
    assert _image(again.avatar).getpixel((0, 0)) == (9, 8, 7)


def test_charx_export_keeps_remote_assets_and_drops_embedded_files_it_does_not_carry() -> None:
    remote = {"type": "background", "uri": "https://example.com/bg.png", "name": "bg", "ext": "png"}
    embedded = {"type": "emotion", "uri": "embeded://assets/emotion/happy.png", "name": "happy", "ext": "png"}
    parsed = card_read(cardgen.card_json(_with(cardgen.card_v3(), "data.assets", [embedded, remote])))
    with zipfile.ZipFile(io.BytesIO(card_charx(data=parsed.data, extra=parsed.extra, avatar=None))) as archive:
        assert archive.namelist() == ["card.json"]
        assert json.loads(archive.read("card.json"))["data"]["assets"] == [remote]
    avatar = cardgen.solid_png(size=(8, 8))
    with zipfile.ZipFile(io.BytesIO(card_charx(data=parsed.data, extra=parsed.extra, avatar=avatar))) as archive:
        assert json.loads(archive.read("card.json"))["data"]["assets"] == [
            {"type": "icon", "uri": "embeded://assets/icon/images/main.png", "name": "main", "ext": "png"},
            remote,
        ]


def test_card_v2_drops_v3_fields_and_absent_optionals_are_left_out() -> None:
    parsed = card_read(cardgen.card_json(cardgen.card_v1()))
    v2 = card_v2(data=parsed.data, extra=parsed.extra)
    assert not V3_ONLY_FIELDS & v2["data"].keys()
    assert "character_book" not in v2["data"]
    assert "creation_date" not in card_v3(data=parsed.data, extra=parsed.extra)["data"]
    assert v2["avatar"] == "none"  # extra kept at the top level


def test_top_level_v1_mirrors_follow_edits() -> None:
    parsed = card_read(cardgen.card_json(cardgen.card_v2()))
    data = {**parsed.data, "name": "Renamed"}
    assert card_v2(data=data, extra=parsed.extra)["name"] == "Renamed"
    assert "name" not in card_v3(data=data, extra={"other": 1})


# --- card_data_check --------------------------------------------------------------------


def test_data_check_fills_defaults_strips_the_name_and_copies() -> None:
    extensions = {"a": {"b": 1}}
    checked = card_data_check({"name": "  Aria \n", "extensions": extensions, "x_custom": [1]})
    assert checked["name"] == "Aria"
    assert checked["tags"] == [] and checked["first_mes"] == "" and checked["character_book"] is None
    assert checked["x_custom"] == [1]
    checked["extensions"]["a"]["b"] = 2
    assert extensions == {"a": {"b": 1}}


def test_data_check_partial_checks_only_given_keys_and_fills_nothing() -> None:
    assert card_data_check({"description": "new"}, partial=True) == {"description": "new"}
    with pytest.raises(CardError) as caught:
        card_data_check({"tags": ["a" * 101]}, partial=True)
    assert caught.value.message == "data.tags[0]: must be at most 100 characters (it has 101)"


def test_data_check_is_strict_where_import_is_lenient() -> None:
    with pytest.raises(CardError) as caught:
        card_data_check({"name": "A", "creator": None})
    assert caught.value.field == "data.creator"
    with pytest.raises(CardError) as caught:
        card_data_check({"description": "x"})
    assert caught.value.field == "data.name"


def test_data_check_truncates_float_dates_and_refuses_other_types() -> None:
    assert card_data_check({"name": "A", "creation_date": 1714564800.75})["creation_date"] == 1714564800
    with pytest.raises(CardError) as caught:
        card_data_check({"name": "A", "modification_date": True})
    assert caught.value.field == "data.modification_date"


def test_nesting_of_64_levels_is_read_and_65_refused() -> None:
    def card_nested(levels: int) -> bytes:
        # card (1) > data (2) > extensions (3) > x: arrays from level 4 on
        arrays = levels - 3
        return b'{"spec":"chara_card_v3","data":{"name":"x","extensions":{"x":' + b"[" * arrays + b"]" * arrays + b"}}}"

    assert card_read(card_nested(64)).data["extensions"]["x"] is not None
    with pytest.raises(CardError) as caught:
        card_read(card_nested(65))
    assert caught.value.field == "data.extensions.x" + "[0]" * 61
    assert "nested more than 64 levels" in caught.value.message


# --- Hostile input ------------------------------------------------------------------------


def _png_raw(*chunks: bytes) -> bytes:
    return cardgen.PNG_SIGNATURE + b"".join(chunks)


def _png_with_chunk_claiming(length: int) -> bytes:
    good = cardgen.png_with(chara=cardgen.card_v2(), ccv3=None)
    return good[:-12] + struct.pack(">I", length) + b"tEXt" + b"short"


def _png_bad_crc() -> bytes:
    png = bytearray(cardgen.png_with(chara=cardgen.card_v2(), ccv3=None))
    png[-1] ^= 0xFF  # the last byte of IEND's CRC
    return bytes(png)


def _png_too_many_chunks() -> bytes:
    ihdr = cardgen.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    return _png_raw(ihdr, cardgen.png_chunk(b"zzZz", b"") * 10_001, cardgen.png_chunk(b"IEND", b""))


def _png_undecodable_image() -> bytes:
    ihdr = cardgen.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
    chara = cardgen.png_chunk(b"tEXt", b"chara\x00" + cardgen.card_b64(cardgen.card_v2()))
    return _png_raw(ihdr, cardgen.png_chunk(b"IDAT", b"not zlib at all"), chara, cardgen.png_chunk(b"IEND", b""))


def _png_card_json_over_4_mib() -> bytes:
    return cardgen.png_with(chara=None, ccv3=_with(cardgen.card_v3(), "data.extensions.blob", "a" * 4_300_000))


def _v3(path: str, value: Any) -> Callable[[], bytes]:
    return lambda: cardgen.card_json(_with(cardgen.card_v3(), path, value))


def _entries(count: int) -> list[dict[str, Any]]:
    return [{"keys": ["k"], "content": "c", "extensions": {}, "enabled": True, "insertion_order": 0}] * count


HOSTILE: list[tuple[str, Callable[[], bytes], int, str]] = [
    # The file.
    ("over_8_mib", lambda: b" " * (MAX_CARD_FILE_BYTES + 1), 413, "file"),
    ("empty", lambda: b"", 400, "file"),
    ("gif_not_a_card", lambda: b"GIF89a\x01\x00\x01\x00" + b"\x00" * 20, 400, "file"),
    ("text_not_json", lambda: b"hello, I am a card", 400, "file"),
    ("invalid_utf8", lambda: b'{"name": "\xff\xfe"}', 400, "file"),
    ("invalid_json", lambda: b'{"name": "x",', 400, "file"),
    ("deep_json_100k", lambda: cardgen.deep_json(100_000), 400, "file"),
    ("nan", lambda: b'{"name": "x", "extra": NaN}', 400, "file"),
    ("huge_int", lambda: b'{"name": "x", "extra": 123456789012345678901234567890}', 400, "file"),
    ("top_level_array", lambda: b'[{"name": "x"}]', 400, "file"),
    ("unknown_spec", _v3("spec", "chara_card_v9"), 400, "spec"),
    ("data_not_object", _v3("data", ["name"]), 400, "data"),
    ("json_over_4_mib", _v3("data.extensions.blob", "a" * 4_300_000), 413, "file"),
    # PNG.
    ("png_truncated", lambda: cardgen.png_with(chara=cardgen.card_v2(), ccv3=None)[:-30], 400, "file"),
    ("png_chunk_beyond_file", lambda: _png_with_chunk_claiming(1_000_000), 400, "file"),
    ("png_chunk_length_over_2gib", lambda: _png_with_chunk_claiming(0xFFFFFFF0), 400, "file"),
    ("png_bad_crc", _png_bad_crc, 400, "file"),
    ("png_too_many_chunks", _png_too_many_chunks, 400, "file"),
    ("png_no_card", cardgen.png_no_card, 400, "file"),
    ("png_bad_base64", cardgen.png_bad_base64, 400, "chara"),
    ("png_ccv3_not_json", lambda: cardgen.solid_png(text={"ccv3": base64.b64encode(b"{nope")}), 400, "ccv3"),
    ("png_ccv3_not_utf8", lambda: cardgen.solid_png(text={"ccv3": base64.b64encode(b'{"a":"\xff"}')}), 400, "ccv3"),
    ("png_card_json_over_4_mib", _png_card_json_over_4_mib, 413, "ccv3"),
    ("png_decompression_bomb", lambda: cardgen.decompression_bomb_png(card=cardgen.card_v2()), 400, "avatar"),
    (
        "png_48_megapixels",
        lambda: cardgen.decompression_bomb_png(size=(8000, 6000), card=cardgen.card_v2()),
        400,
        "avatar",
    ),
    ("png_undecodable_image", _png_undecodable_image, 400, "avatar"),
    # CHARX.
    ("charx_not_a_zip", lambda: b"PK\x03\x04" + b"\x00" * 100, 400, "file"),
    ("charx_zip_bomb", cardgen.zip_bomb, 400, "file"),
    ("charx_wide_bomb", cardgen.zip_wide_bomb, 400, "file"),
    ("charx_ratio_bomb", lambda: cardgen.zip_bomb(size=2 * 1024 * 1024), 400, "file"),
    ("charx_traversal", cardgen.charx_traversal, 400, "file"),
    ("charx_absolute", lambda: cardgen.charx_with(cardgen.card_v3(), avatar=None, files={"/etc/x": b"x"}), 400, "file"),
    ("charx_backslash", lambda: cardgen.charx_with(cardgen.card_v3(), avatar=None, files={"a\\b": b"x"}), 400, "file"),
    ("charx_drive", lambda: cardgen.charx_with(cardgen.card_v3(), avatar=None, files={"C:/x": b"x"}), 400, "file"),
    ("charx_too_many_entries", cardgen.charx_many_entries, 400, "file"),
    ("charx_encrypted", cardgen.charx_encrypted, 400, "file"),
    ("charx_no_card_json", lambda: cardgen.charx_with(None, avatar=None, files={"x/card.json": b"{}"}), 400, "file"),
    ("charx_card_json_invalid", lambda: cardgen.charx_with(b"{oops", avatar=None), 400, "card.json"),
    (
        "charx_card_without_name",
        lambda: cardgen.charx_with({"spec": "chara_card_v3", "data": {}}, avatar=None),
        400,
        "data.name",
    ),
    # Fields.
    ("name_empty", _v3("data.name", "  \r\n "), 400, "data.name"),
    ("name_too_long", _v3("data.name", "n" * 257), 400, "data.name"),
    ("name_not_string", _v3("data.name", 42), 400, "data.name"),
    ("description_too_long", _v3("data.description", "d" * 60_001), 400, "data.description"),
    ("description_nul", _v3("data.description", "a\x00b"), 400, "data.description"),
    (
        "personality_lone_surrogate",
        lambda: cardgen.card_json(cardgen.card_v3()).replace(b'"personality": "', b'"personality": "\\ud800'),
        400,
        "data.personality",
    ),
    ("creator_too_long", _v3("data.creator", "c" * 257), 400, "data.creator"),
    ("tag_too_long", _v3("data.tags.3", "t" * 101), 400, "data.tags[3]"),
    ("too_many_tags", _v3("data.tags", ["t"] * 101), 400, "data.tags"),
    ("tag_not_string", _v3("data.tags.0", {"tag": 1}), 400, "data.tags[0]"),
    ("greetings_not_list", _v3("data.alternate_greetings", "hi"), 400, "data.alternate_greetings"),
    ("too_many_greetings", _v3("data.group_only_greetings", ["g"] * 101), 400, "data.group_only_greetings"),
    ("too_many_sources", _v3("data.source", ["s"] * 51), 400, "data.source"),
    ("extensions_not_object", _v3("data.extensions", []), 400, "data.extensions"),
    (
        "notes_too_many_languages",
        _v3("data.creator_notes_multilingual", {f"l{i}": "x" for i in range(51)}),
        400,
        "data.creator_notes_multilingual",
    ),
    ("asset_not_object", _v3("data.assets", ["icon.png"]), 400, "data.assets[0]"),
    ("asset_uri_not_string", _v3("data.assets.0.uri", 5), 400, "data.assets[0].uri"),
    ("date_not_number", _v3("data.creation_date", "yesterday"), 400, "data.creation_date"),
    ("book_not_object", _v3("data.character_book", "lore"), 400, "data.character_book"),
    ("book_too_many_entries", _v3("data.character_book.entries", _entries(2001)), 400, "data.character_book.entries"),
    ("book_scan_depth_too_big", _v3("data.character_book.scan_depth", 1001), 400, "data.character_book.scan_depth"),
    ("book_token_budget_bool", _v3("data.character_book.token_budget", True), 400, "data.character_book.token_budget"),
    (
        "entry_keys_not_list",
        _v3("data.character_book.entries.3.keys", "ledger"),
        400,
        "data.character_book.entries[3].keys",
    ),
    (
        "entry_key_too_long",
        _v3("data.character_book.entries.3.keys.0", "k" * 501),
        400,
        "data.character_book.entries[3].keys[0]",
    ),
    (
        "entry_content_too_long",
        _v3("data.character_book.entries.0.content", "c" * 60_001),
        400,
        "data.character_book.entries[0].content",
    ),
    (
        "entry_order_is_bool",
        _v3("data.character_book.entries.1.insertion_order", False),
        400,
        "data.character_book.entries[1].insertion_order",
    ),
    (
        "entry_enabled_not_bool",
        _v3("data.character_book.entries.1.enabled", "yes"),
        400,
        "data.character_book.entries[1].enabled",
    ),
    (
        "entry_position_unknown",
        _v3("data.character_book.entries.1.position", "middle"),
        400,
        "data.character_book.entries[1].position",
    ),
    (
        "entry_secondary_keys_too_many",
        _v3("data.character_book.entries.1.secondary_keys", ["k"] * 101),
        400,
        "data.character_book.entries[1].secondary_keys",
    ),
]


@pytest.mark.parametrize(("make", "status", "field"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_input_is_refused_with_a_card_error(make: Callable[[], bytes], status: int, field: str) -> None:
    content = make()
    with pytest.raises(CardError) as caught:
        card_read(content)
    error = caught.value
    assert (error.status, error.field) == (status, field)
    assert isinstance(error, CardTooLargeError) == (status == 413)
    assert error.code == ("card_too_large" if status == 413 else "invalid_card")
    assert error.message.startswith(f"{field}: ") or error.message.startswith("in ")


def test_hostile_files_are_small_on_disk() -> None:
    # They must stay cheap to ship to the REST and browser tests.
    assert len(cardgen.zip_bomb()) < 100_000
    assert len(cardgen.zip_wide_bomb()) < 2_000_000
    assert len(cardgen.decompression_bomb_png()) < 100_000


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (cardgen.zip_bomb, "expands to more than 33,554,432 bytes"),
        (cardgen.zip_wide_bomb, "expands to more than 33,554,432 bytes"),  # no entry is over the ratio
        (lambda: cardgen.zip_bomb(size=2 * 1024 * 1024), "is compressed over 100 times"),
    ],
    ids=["one_entry", "many_entries", "ratio_only"],
)
def test_zip_bombs_are_refused_from_the_declared_sizes(make: Callable[[], bytes], words: str) -> None:
    with pytest.raises(CardError) as caught:
        card_read(make())
    assert words in caught.value.message


# --- image_reencode -----------------------------------------------------------------------


def test_image_reencode_strips_metadata() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "GPS 37.5665N 126.9780E")
    info.add_text("Raw profile type exif", "exif\n  44\n4578696600004d4d002a")
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    source = io.BytesIO()
    icc = b"fake ICC profile: a device fingerprint"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(source, format="PNG", pnginfo=info, exif=exif, icc_profile=icc)
    kinds = {kind for kind, _ in cardgen.png_chunks(source.getvalue())}
    assert {b"tEXt", b"eXIf", b"iCCP"} <= kinds  # the input really carries them

    out = image_reencode(source.getvalue())
    assert [kind for kind, _ in cardgen.png_chunks(out)] == [b"IHDR", b"IDAT", b"IEND"]
    image = _image(out)
    assert image.info == {}
    assert dict(image.getexif()) == {}
    assert image.getpixel((0, 0)) == (200, 10, 10)


def test_image_reencode_strips_jpeg_exif_and_converts_to_png() -> None:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    source = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 120, 255)).save(source, format="JPEG", exif=exif)
    image = _image(image_reencode(source.getvalue()))
    assert (image.format, image.size, image.mode) == ("PNG", (64, 48), "RGB")
    assert "exif" not in image.info


def test_image_reencode_shrinks_the_longest_side_to_1024() -> None:
    source = io.BytesIO()
    Image.new("RGB", (3000, 100), (1, 1, 1)).save(source, format="PNG")
    assert _image(image_reencode(source.getvalue())).size == (1024, 34)


def test_image_reencode_keeps_transparency() -> None:
    source = io.BytesIO()
    Image.new("RGBA", (10, 10), (1, 2, 3, 0)).save(source, format="PNG")
    image = _image(image_reencode(source.getvalue()))
    assert (image.mode, image.getpixel((0, 0))) == ("RGBA", (1, 2, 3, 0))


def _tiff() -> bytes:
    # Pillow decodes TIFF fine; the avatar decoders are limited to PNG/JPEG/WebP/GIF on purpose.
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="TIFF")
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"not an image", "not a readable image"),
        (cardgen.solid_png(size=(50, 50))[:60], "not a readable image"),
        (cardgen.decompression_bomb_png(size=(8000, 6000)), "8,000x6,000 pixels"),
        (cardgen.decompression_bomb_png(), "too many pixels"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a readable image"),
        (_tiff(), "not a readable image"),
        (b"", "empty"),
    ],
    ids=[
        "garbage",
        "truncated_png",
        "48_megapixels",
        "400_megapixels",
        "eps_is_not_decoded",
        "tiff_is_not_decoded",
        "empty",
    ],
)
def test_image_reencode_refuses_what_it_cannot_or_should_not_decode(content: bytes, words: str) -> None:
    with pytest.raises(CardError) as caught:
        image_reencode(content, field="data.avatar")
    assert (caught.value.field, caught.value.status) == ("data.avatar", 400)
    assert words in caught.value.message


def test_cardgen_writes_every_file(tmp_path: Any) -> None:
    paths = cardgen.cards_write(tmp_path)
    names = {path.name for path in paths}
    assert {"card_v3.png", "card_v3.charx", "hostile_zip_bomb.charx"} <= names
    assert card_read((tmp_path / "card_v3.charx").read_bytes()).avatar is not None
    assert zlib.crc32((tmp_path / "card_v1.json").read_bytes()) == zlib.crc32(cardgen.card_json(cardgen.card_v1()))
