"""Where the desktop keeps its billing account token: the OS keyring, through app/secrets.

The client takes two plain coroutines (load, save) so tests can pass a dict;
`keyring_token_io(store)` makes them from the app's SecretStore, under the
entry "billing" with the account's email as the key name and the token as
the secret. The token never reaches settings or logs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.secrets import ApiCredentials, SecretStore

__all__ = ["ENTRY", "StoredToken", "TokenLoader", "TokenSaver", "keyring_token_io", "memory_token_io"]

ENTRY = "billing"


@dataclass(frozen=True, slots=True)
class StoredToken:
    email: str
    token: str

    def __repr__(self) -> str:
        return f"StoredToken(email={self.email!r}, token='***')"


TokenLoader = Callable[[], Awaitable[StoredToken | None]]
TokenSaver = Callable[[StoredToken | None], Awaitable[None]]  # None forgets the token


def keyring_token_io(store: SecretStore) -> tuple[TokenLoader, TokenSaver]:
    async def load() -> StoredToken | None:
        creds = await store.get(ENTRY)
        return None if creds is None else StoredToken(creds.api_key, creds.secret)

    async def save(value: StoredToken | None) -> None:
        if value is None:
            await store.delete(ENTRY)
        else:
            await store.set(ENTRY, ApiCredentials(api_key=value.email, secret=value.token))

    return load, save


def memory_token_io(initial: StoredToken | None = None) -> tuple[TokenLoader, TokenSaver, list[StoredToken | None]]:
    """For tests and for a session-only sign-in: (load, save, the list holding the current value)."""
    box: list[StoredToken | None] = [initial]

    async def load() -> StoredToken | None:
        return box[0]

    async def save(value: StoredToken | None) -> None:
        box[0] = value

    return load, save, box
