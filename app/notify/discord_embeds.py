"""Discord embeds from a `Message`, always within Discord's limits. Pure functions.

Limits (Discord's "Embed Limits", counted in characters): title 256,
description 4096, 25 fields, field name 256 and value 1024, footer text 2048,
author name 256; and at most 6000 characters across title, description, field
names and values, footer and author of *all* embeds of one message, which may
carry at most 10 embeds.

Decision: one notification is one Discord message (one POST), never several,
so a retry can never post half of it twice. A long description continues in
further embeds of the same message; whatever still does not fit in 6000
characters is cut with a marker saying the full text is in the app.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.notify.message import Message

__all__ = ["LIMITS", "build_embeds", "embed_chars"]

LIMITS = {
    "embeds": 10,
    "total": 6000,
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field_name": 256,
    "field_value": 1024,
    "footer": 2048,
}
ELLIPSIS = "…"
CUT_NOTE = "\n… (cut to fit Discord; the full text is in Meridian Terminal)"
ZERO_WIDTH = "\u200b"  # Discord refuses empty field names and values


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def _chunks(text: str, size: int) -> list[str]:
    """Split at line breaks (or spaces) where possible, each chunk at most `size` characters."""
    parts: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", size // 2, size)
        if cut <= 0:
            cut = text.rfind(" ", size // 2, size)
        if cut <= 0:
            cut = size
        parts.append(text[:cut])
        text = text[cut:].lstrip("\n") if text[cut:cut + 1] == "\n" else text[cut:]
    if text:
        parts.append(text)
    return parts


def embed_chars(embed: dict[str, Any]) -> int:
    """The characters of one embed that count toward the 6000 limit."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    total += len(embed.get("footer", {}).get("text", ""))
    total += len(embed.get("author", {}).get("name", ""))
    return total


def build_embeds(message: Message, *, description: str | None = None) -> list[dict[str, Any]]:
    """The embeds of one Discord message for `message` (title, description, fields, colour, timestamp, footer)."""
    budget = LIMITS["total"]
    colour = message.colour & 0xFFFFFF
    timestamp = datetime.fromtimestamp(message.created_at, UTC).isoformat() if message.created_at else None

    first: dict[str, Any] = {"type": "rich", "color": colour}
    title = _cut(message.title.strip() or message.kind, LIMITS["title"])
    first["title"] = title
    budget -= len(title)
    footer = _cut(message.extra.get("footer", "Meridian Terminal"), min(LIMITS["footer"], 200))
    first["footer"] = {"text": footer}
    budget -= len(footer)
    if timestamp:
        first["timestamp"] = timestamp
    embeds = [first]

    if description is None:
        description = "\n\n".join(p for p in (message.summary, message.detail) if p) or message.text
    body = description.strip()
    max_embeds = LIMITS["embeds"]

    # Fields before prose: they hold the numbers a trader scans for; the prose may be cut.
    # At most what the embeds left after the description (up to 2 chunks of 4096 in 6000) can hold.
    max_fields = (max_embeds - 2) * LIMITS["fields"]
    reserve = min(len(body), 200)  # room for at least the start of the description
    placed: list[dict[str, Any]] = []
    for f in message.fields[:max_fields]:
        name = _cut(f.name.strip() or ZERO_WIDTH, LIMITS["field_name"])
        value = _cut(f.value.strip() or ZERO_WIDTH, LIMITS["field_value"])
        room = budget - reserve - len(name)
        if room < min(len(value), 20):
            break
        value = _cut(value, room)
        placed.append({"name": name, "value": value, "inline": bool(f.inline)})
        budget -= len(name) + len(value)
    groups = [placed[i : i + LIMITS["fields"]] for i in range(0, len(placed), LIMITS["fields"])]

    if len(body) > budget:
        body = body[: budget - len(CUT_NOTE)].rstrip() + CUT_NOTE if budget > len(CUT_NOTE) + 20 else ""
    chunks = _chunks(body, LIMITS["description"]) if body else []

    # embed 0: title, footer, timestamp and the first chunk; further chunks follow, the
    # first field group sits under the last chunk, further groups get embeds of their own.
    for i, chunk in enumerate(chunks):
        if i == 0:
            first["description"] = chunk
        else:
            embeds.append({"type": "rich", "color": colour, "description": chunk})
    for i, group in enumerate(groups):
        if i == 0:
            embeds[-1]["fields"] = group
        else:
            embeds.append({"type": "rich", "color": colour, "fields": group})
    if len(embeds) > max_embeds:  # cannot happen with the caps above; never send what Discord refuses
        embeds = embeds[:max_embeds]
    return embeds
