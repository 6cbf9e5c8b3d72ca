"""Where exchange API keys live: the OS keyring, or what the user chose when there is none.

Secrets go through this package only. They never reach settings, logs,
exceptions or reprs: `ApiCredentials` masks itself, and every error raised
here is a sentence that names the venue and what failed, never a value.

How the UI uses it:

    status = await asyncio.to_thread(backend_status)     # may probe D-Bus briefly
    if status.secure:
        store = await open_secret_store(data_dir, StoreKind.KEYRING)
    else:
        # Show status.explanation and let the user choose; never fall back silently.
        store = await open_secret_store(data_dir, StoreKind.SESSION)            # memory only
        store = await open_secret_store(data_dir, StoreKind.VAULT, password=pw) # vault_exists() tells
                                                                                # "create" from "unlock"
    await store.set("binance", ApiCredentials(api_key, secret))
    creds = await store.get("binance")        # None when the venue has no keys
    await store.venues_with_keys()            # ["binance"]
    await store.delete("binance")

Secure backends are an explicit list of OS keyrings (`SECURE_BACKENDS`):
Secret Service and KWallet on Linux, Windows Credential Locker, the macOS
Keychain. keyring's `fail` and `null` backends, keyrings.alt's file backends and
any unknown plugin count as "no secure keyring". A chainer uses its best
secure member directly, never the plaintext ones chained behind it.

The user's choice of session or vault is not a secret and may be remembered
in settings; the vault's password never is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.secrets.store import (
    SECURE_BACKENDS,
    SERVICE_NAME,
    ApiCredentials,
    BackendStatus,
    InvalidCredentialsError,
    KeyringAccessError,
    KeyringSecretStore,
    MemorySecretStore,
    NoSecureKeyringError,
    SecretStore,
    SecretStoreError,
    StoreClosedError,
    StoreKind,
    backend_status,
    mask,
    resolve_backend,
)
from app.secrets.vault import (
    MIN_PASSWORD_LENGTH,
    KdfParams,
    VaultCorruptError,
    VaultError,
    VaultExistsError,
    VaultNotFoundError,
    VaultSecretStore,
    VaultVersionError,
    WrongPasswordError,
)

VAULT_FILENAME = "keys.vault"

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "SECURE_BACKENDS",
    "SERVICE_NAME",
    "VAULT_FILENAME",
    "ApiCredentials",
    "BackendStatus",
    "InvalidCredentialsError",
    "KdfParams",
    "KeyringAccessError",
    "KeyringSecretStore",
    "MemorySecretStore",
    "NoSecureKeyringError",
    "SecretStore",
    "SecretStoreError",
    "StoreClosedError",
    "StoreKind",
    "VaultCorruptError",
    "VaultError",
    "VaultExistsError",
    "VaultNotFoundError",
    "VaultSecretStore",
    "VaultVersionError",
    "WrongPasswordError",
    "backend_status",
    "mask",
    "get_token",
    "open_secret_store",
    "set_token",
    "resolve_backend",
    "vault_exists",
    "vault_path",
]


# Secrets that are one value rather than a key pair (a provider's API key, the SMTP password, a
# Discord webhook URL, the billing token) ride in the same stores as an entry whose `api_key` is the
# entry's own name: one place for every secret, one masking rule, one keyring index.
TOKEN_NAMES = {
    "marketdata_coinmarketcap": "CoinMarketCap API key",
    "marketdata_polygon": "Polygon API key",
    "marketdata_alphavantage": "Alpha Vantage API key",
    "notify_smtp": "SMTP password",
    "notify_discord_webhook": "Discord webhook URL",
    "notify_discord_bot": "Discord bot token",
    "notify_twilio": "Twilio auth token",
    "billing": "billing account token",
}


async def get_token(store: SecretStore, name: str) -> str | None:
    """A single-value secret, or None when it is not set."""
    creds = await store.get(name)
    return creds.secret if creds is not None else None


async def set_token(store: SecretStore, name: str, value: str) -> None:
    """Keep a single-value secret; an empty value deletes it."""
    if value.strip():
        await store.set(name, ApiCredentials(name, value))
    else:
        await store.delete(name)


def vault_path(data_dir: Path) -> Path:
    """The key vault's file in the user data dir."""
    return Path(data_dir) / VAULT_FILENAME


def vault_exists(data_dir: Path) -> bool:
    """Whether to ask for the vault's password ("unlock") or for a new one twice ("create")."""
    return vault_path(data_dir).exists()


async def open_secret_store(
    data_dir: Path,
    choice: StoreKind | str,
    *,
    password: str | None = None,
    service: str = SERVICE_NAME,
    kdf: KdfParams | None = None,
) -> SecretStore:
    """The store the user chose.

    - `keyring`: the OS keyring; raises `NoSecureKeyringError` (whose message
      is `backend_status().explanation`) when there is no secure one, so the UI
      can offer the other two choices.
    - `session`: memory only, forgotten on exit.
    - `vault`: `<data_dir>/keys.vault`, unlocked with `password`, or created
      with it (and `kdf`, default Argon2id t=3, 64 MiB, p=2) if there is none
      yet. Raises `WrongPasswordError`, `VaultCorruptError`, `VaultVersionError`
      or `VaultError` with a sentence for the user.
    """
    try:
        kind = StoreKind(choice)
    except ValueError:
        raise SecretStoreError("Choose where to keep API keys: keyring, session or vault.") from None
    if kind is StoreKind.KEYRING:
        return await asyncio.to_thread(KeyringSecretStore, service)
    if kind is StoreKind.SESSION:
        return MemorySecretStore()
    if password is None:
        raise VaultError("Enter the vault's master password.")
    path = vault_path(data_dir)
    if path.exists():
        return await VaultSecretStore.open(path, password)
    return await VaultSecretStore.create(path, password, kdf=kdf)
