"""Discord embeds stay within Discord's limits whatever the message holds.

The oracle is the test server's validator (tests/servers/discord.py), written from
Discord's documented limits independently of the code under test.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from app.notify.discord_embeds import build_embeds, embed_chars
from app.notify.message import Field, Message
from app.notify.templates import render
from tests.servers.discord import embed_problems

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=7000)
fields = st.lists(st.builds(Field, st.text(max_size=400), st.text(max_size=1500), st.booleans()), max_size=80)


@settings(max_examples=150, deadline=None)
@given(title=st.text(max_size=600), summary=text, detail=text, fields=fields, colour=st.integers(0, 2**32))
def test_any_message_becomes_embeds_discord_accepts(
    title: str, summary: str, detail: str, fields: list[Field], colour: int
) -> None:
    m = Message("id", "price_alert", title, summary, "", fields=tuple(fields), colour=colour, created_at=1.7e9,
                summary=summary, detail=detail)
    embeds = build_embeds(m)
    assert embed_problems({"embeds": embeds}) == []
    assert 1 <= len(embeds) <= 10


def test_a_normal_message_is_sent_whole() -> None:
    m = render("trade_executed", {"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.5"),
                                  "price": Decimal("65000.10"), "order_id": "mt1"}, "id", now=1.7e9)
    (embed,) = build_embeds(m)
    assert embed["title"] == m.title
    assert embed["description"] == m.summary
    assert [(f["name"], f["value"]) for f in embed["fields"]] == [(f.name, f.value) for f in m.fields]
    assert embed["color"] == m.colour
    assert embed["timestamp"].startswith("2023-11-14T22:13:20")
    assert embed["footer"]["text"] == "Meridian Terminal"


def test_an_oversized_message_is_cut_with_a_note_and_keeps_its_numbers() -> None:
    note = "line of a very long note\n" * 1000  # 25,000 characters
    m = render("price_alert", {"symbol": "BTC/USDT", "price": Decimal("70012.5"), "note": note}, "id", now=1.7e9)
    embeds = build_embeds(m)
    assert embed_problems({"embeds": embeds}) == []
    assert sum(embed_chars(e) for e in embeds) <= 6000
    assert len(embeds) == 2  # the description continues in a second embed
    assert embeds[-1]["description"].endswith("the full text is in Meridian Terminal)")
    assert embeds[0]["description"].startswith(m.summary)
    values = [f["value"] for e in embeds for f in e.get("fields", [])]
    assert "70,012.5 USDT" in values  # the numbers survive the cut


def test_long_titles_and_fields_are_cut_to_their_limits() -> None:
    m = Message("id", "price_alert", "T" * 1000, "", "", fields=(Field("N" * 999, "V" * 5000),) * 30,
                created_at=1.7e9, summary="S" * 100)
    embeds = build_embeds(m)
    assert embed_problems({"embeds": embeds}) == []
    assert len(embeds[0]["title"]) == 256 and embeds[0]["title"].endswith("…")
    assert all(len(f["name"]) <= 256 and len(f["value"]) <= 1024 for e in embeds for f in e.get("fields", []))
    assert embeds[0]["description"].startswith("S" * 100)
