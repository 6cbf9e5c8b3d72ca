"""API credentials, the store protocol, the session (memory) store and the OS keyring store.

Nothing in this module ever puts a secret into an exception message, a log
record or a repr: errors name the venue and what failed, never the value.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar, runtime_checkable

import keyring
import keyring.errors
from keyring.backend import KeyringBackend
from keyring.backends.chainer import ChainerBackend

log = logging.getLogger("app.secrets")

SERVICE_NAME = "meridian-terminal"
HIDDEN = "••••"
_ELLIPSIS = "…"
_SHOW_ENDS_FROM = 16  # a key shorter than this shows nothing: 4 + 4 visible would be half of it
_VENUE = re.compile(r"[a-z][a-z0-9_]{0,63}")

T = TypeVar("T")


# --------------------------------------------------------------------------- errors


class SecretStoreError(Exception):
    """A failure of a secret store, as a sentence for the user. Never holds a secret value."""


class InvalidCredentialsError(SecretStoreError, ValueError):
    """Credentials or a venue name that cannot be stored (empty key, wrong type, bad venue id)."""


class NoSecureKeyringError(SecretStoreError):
    """The keyring store was asked for, but no secure OS keyring exists. `status` says why."""

    def __init__(self, status: BackendStatus) -> None:
        super().__init__(status.explanation)
        self.status = status


class KeyringAccessError(SecretStoreError):
    """The OS keyring exists but refused or failed (locked, prompt dismissed, D-Bus error)."""


# --------------------------------------------------------------------------- credentials


def mask(value: str, *, secret: bool = False) -> str:
    """A form of `value` that is safe to show or log.

    An API key of 16 characters or more shows its first and last four
    (`abcd…wxyz`) so the user can tell keys apart; anything shorter, and any
    secret or passphrase (`secret=True`), is a fixed `••••` that does not
    even reveal the length. An empty value stays empty ("not set").
    """
    if not value:
        return ""
    if secret or len(value) < _SHOW_ENDS_FROM:
        return HIDDEN
    return f"{value[:4]}{_ELLIPSIS}{value[-4:]}"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class ApiCredentials:
    """One venue's API key, secret and (for venues such as OKX or KuCoin) passphrase.

    Leading and trailing whitespace of the key and secret is removed (a pasted
    key often ends in a newline, and no venue issues keys with spaces); the
    passphrase is kept exactly as typed. `repr`/`str` mask every value, and
    `==` is hand-written so that tools which diff dataclass fields (pytest's
    assertion report) never print them either.
    """

    api_key: str
    secret: str
    passphrase: str = field(default="")

    def __post_init__(self) -> None:
        for name in ("api_key", "secret", "passphrase"):
            if not isinstance(getattr(self, name), str):
                raise InvalidCredentialsError(f"The {_LABELS[name]} must be text.")
        object.__setattr__(self, "api_key", self.api_key.strip())
        object.__setattr__(self, "secret", self.secret.strip())
        if not self.api_key:
            raise InvalidCredentialsError("The API key is empty; paste the key the exchange showed you.")
        if not self.secret:
            raise InvalidCredentialsError("The API secret is empty; paste the secret the exchange showed you.")

    def __repr__(self) -> str:
        return (
            f"ApiCredentials(api_key='{mask(self.api_key)}', secret='{mask(self.secret, secret=True)}', "
            f"passphrase='{mask(self.passphrase, secret=True)}')"
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiCredentials):
            return NotImplemented
        return hmac.compare_digest(_canonical(self).encode(), _canonical(other).encode())

    def __hash__(self) -> int:
        return hash(self.api_key)


_LABELS = {"api_key": "API key", "secret": "API secret", "passphrase": "API passphrase"}


def _canonical(creds: ApiCredentials) -> str:
    return json.dumps([creds.api_key, creds.secret, creds.passphrase])


def credentials_to_dict(creds: ApiCredentials) -> dict[str, str]:
    return {"api_key": creds.api_key, "secret": creds.secret, "passphrase": creds.passphrase}


def credentials_from_dict(data: object) -> ApiCredentials:
    """The inverse of `credentials_to_dict`; raises `ValueError` without quoting the data."""
    if not isinstance(data, dict):
        raise ValueError("not an object")
    api_key, secret, passphrase = data.get("api_key"), data.get("secret"), data.get("passphrase", "")
    if not (isinstance(api_key, str) and isinstance(secret, str) and isinstance(passphrase, str)):
        raise ValueError("missing or non-text fields")
    try:
        return ApiCredentials(api_key, secret, passphrase)
    except InvalidCredentialsError:
        raise ValueError("empty key or secret") from None


def normalize_venue(venue: object) -> str:
    """A venue id as settings write it (`binance`, `gate`, `okx_testnet`); raises otherwise."""
    if isinstance(venue, str) and _VENUE.fullmatch(venue.strip().lower()):
        return venue.strip().lower()
    raise InvalidCredentialsError(
        "A venue must be named by its id, such as 'binance' (lower-case letters, digits and underscores)."
    )


# --------------------------------------------------------------------------- the store protocol


class StoreKind(StrEnum):
    """Where keys are kept; also the user's choice when no OS keyring exists."""

    KEYRING = "keyring"  # the OS keyring (the default, and the only choice when it is secure)
    SESSION = "session"  # memory only: forgotten when the terminal closes
    VAULT = "vault"  # an encrypted file protected by a master password


@runtime_checkable
class SecretStore(Protocol):
    """Where API credentials live. Every method is safe to await from the UI's loop.

    `venue` is a venue id (`binance`); it is normalised to lower case and
    checked. `delete` of a venue without keys is not an error.
    """

    kind: StoreKind

    async def get(self, venue: str) -> ApiCredentials | None: ...

    async def set(self, venue: str, creds: ApiCredentials) -> None: ...

    async def delete(self, venue: str) -> None: ...

    async def venues_with_keys(self) -> list[str]: ...

    def close(self) -> None:
        """Forget whatever the store holds in memory; it is unusable afterwards."""
        ...


def check_credentials(creds: object) -> ApiCredentials:
    if not isinstance(creds, ApiCredentials):
        raise InvalidCredentialsError("Only ApiCredentials can be stored.")
    return creds


class StoreClosedError(SecretStoreError):
    pass


class MemorySecretStore:
    """Keys for this session only: kept in memory and gone when the terminal closes."""

    kind = StoreKind.SESSION

    def __init__(self) -> None:
        self._items: dict[str, ApiCredentials] | None = {}

    def _data(self) -> dict[str, ApiCredentials]:
        if self._items is None:
            raise StoreClosedError("The session key store was closed; enter the API keys again.")
        return self._items

    async def get(self, venue: str) -> ApiCredentials | None:
        return self._data().get(normalize_venue(venue))

    async def set(self, venue: str, creds: ApiCredentials) -> None:
        self._data()[normalize_venue(venue)] = check_credentials(creds)
        log.info("API keys for %s kept for this session only", normalize_venue(venue))

    async def delete(self, venue: str) -> None:
        self._data().pop(normalize_venue(venue), None)

    async def venues_with_keys(self) -> list[str]:
        return sorted(self._data())

    def close(self) -> None:
        self._items = None


# --------------------------------------------------------------------------- keyring backends


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """Whether the OS keyring can hold API keys, for the UI to show or to ask the user.

    `name` is a human name ("Secret Service", "macOS Keychain", or the
    backend's class when it is not trusted); `explanation` is a sentence for
    the user: where keys go, or what is missing and what the choices are.
    `backend` is the keyring backend's full class name, for support logs.
    """

    secure: bool
    name: str
    explanation: str
    backend: str = ""


# Exact classes, not subclasses or anything with a high priority: only these keep secrets
# encrypted by the operating system. keyrings.alt's file backends, the null and fail backends
# and any unknown plugin are refused, so keys never land in a plaintext file by accident.
SECURE_BACKENDS: dict[str, str] = {
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "Secret Service",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "KWallet",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Locker",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
}

_CHOICES = (
    "Choose how to keep your API keys instead: for this session only (in memory; you enter them again "
    "after each restart), or in an encrypted vault file protected by a master password."
)


def _class_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _platform_missing() -> tuple[str, str]:
    """What is missing on this OS, and how the user could add it."""
    if sys.platform == "win32":
        return "Windows Credential Locker could not be used", ""
    if sys.platform == "darwin":
        return "the macOS Keychain could not be used", ""
    return (
        "no Secret Service keyring (GNOME Keyring or KWallet) is running on this desktop session",
        " To use the system keyring, install and unlock GNOME Keyring or KWallet, then restart Meridian Terminal.",
    )


def _viable(backend: KeyringBackend) -> str | None:
    """None when the backend can be reached, else the reason keyring gives (no secret in it)."""
    try:
        type(backend).priority  # noqa: B018  (keyring checks availability, e.g. D-Bus, here)
    except Exception as exc:  # noqa: BLE001  (any failure means: not usable)
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def resolve_backend(backend: KeyringBackend | None = None) -> tuple[KeyringBackend | None, BackendStatus]:
    """The secure backend to use (None if there is none) and the status to show.

    `backend` defaults to keyring's configured one. A chainer resolves to its
    highest-priority secure member, which is then used directly, so a write
    can never fall through to a plaintext backend chained behind it. This may
    block briefly (it probes D-Bus on Linux): call it from a worker thread.
    """
    if backend is None:
        try:
            backend = keyring.get_keyring()
        except Exception as exc:  # noqa: BLE001
            return None, _insecure("none", "", f"the keyring library could not start ({type(exc).__name__})")
    cls = _class_name(backend)
    if isinstance(backend, ChainerBackend):
        try:
            members = list(backend.backends)
        except Exception:  # noqa: BLE001
            members = []
        secure = [b for b in members if _class_name(b) in SECURE_BACKENDS and _viable(b) is None]
        if secure:
            chosen = secure[0]
            ignored = [_class_name(b) for b in members if b is not chosen]
            return chosen, _secure(chosen, ignored)
        names = ", ".join(_class_name(b) for b in members) or "none"
        return None, _insecure(
            "none", cls, f"none of the keyring backends found ({names}) is an operating-system keyring"
        )
    if cls == "keyring.backends.fail.Keyring":
        return None, _insecure("none", cls, _platform_missing()[0])
    if cls == "keyring.backends.null.Keyring":
        return None, _insecure(
            "none",
            cls,
            "keyring storage is switched off (the 'null' keyring backend is configured, "
            "for example by PYTHON_KEYRING_BACKEND or keyringrc.cfg)",
        )
    if cls not in SECURE_BACKENDS:
        return None, _insecure(
            cls,
            cls,
            f"the configured keyring backend {cls} is not an operating-system keyring "
            "and may keep passwords unencrypted on disk, so it is not used for API keys",
        )
    reason = _viable(backend)
    if reason is not None:
        return None, _insecure(
            SECURE_BACKENDS[cls], cls, f"{SECURE_BACKENDS[cls]} is configured but cannot be reached ({reason})"
        )
    return backend, _secure(backend, [])


def backend_status(backend: KeyringBackend | None = None) -> BackendStatus:
    """Whether API keys can go to the OS keyring; see `resolve_backend` (it may block briefly)."""
    return resolve_backend(backend)[1]


def _secure(backend: KeyringBackend, ignored: list[str]) -> BackendStatus:
    name = SECURE_BACKENDS[_class_name(backend)]
    text = f"API keys are kept in {name}, the operating system's keyring."
    if ignored:
        text += f" Other keyring backends found ({', '.join(ignored)}) are not used for API keys."
    return BackendStatus(secure=True, name=name, explanation=text, backend=_class_name(backend))


def _insecure(name: str, cls: str, what: str) -> BackendStatus:
    fix = _platform_missing()[1]
    text = f"API keys cannot be saved securely: {what}. {_CHOICES}{fix}"
    return BackendStatus(secure=False, name=name, explanation=text, backend=cls)


# --------------------------------------------------------------------------- the keyring store

_ENTRY_USER = "api-credentials"
_INDEX_USER = "venues"
_FORMAT = 1
_WINDOWS_BLOB_LIMIT = 2560  # bytes of UTF-16: CRED_MAX_CREDENTIAL_BLOB_SIZE


class KeyringSecretStore:
    """API keys in the OS keyring: one JSON entry per venue plus an index of venues.

    Layout: service `<service>/<venue>`, user `api-credentials`, password
    `{"v": 1, "api_key": ..., "secret": ..., "passphrase": ...}`; the index is
    service `<service>`, user `venues`, password `{"v": 1, "venues": [...]}`
    (keyring cannot list entries). One service per venue keeps Windows
    Credential Locker to one user per target. A venue is added to the index
    before its entry is written and removed only after its entry is deleted, so
    a failure can leave a listed venue without keys (harmless: `get` returns
    None and `delete` clears it) but never a hidden secret the user cannot see
    or delete.

    Keyring calls block (D-Bus, Keychain prompts), so they run in a worker
    thread, one at a time. The constructor resolves the backend (see
    `resolve_backend`) and raises `NoSecureKeyringError` when there is no
    secure one: it never falls back silently.
    """

    kind = StoreKind.KEYRING

    def __init__(self, service: str = SERVICE_NAME, *, backend: KeyringBackend | None = None) -> None:
        if not isinstance(service, str) or not service.strip():
            raise InvalidCredentialsError("The keyring service name must be non-empty text.")
        chosen, status = resolve_backend(backend)
        if chosen is None:
            raise NoSecureKeyringError(status)
        self.service = service.strip()
        self.status = status
        self._backend: KeyringBackend | None = chosen
        self._lock = asyncio.Lock()

    # -- the protocol

    async def get(self, venue: str) -> ApiCredentials | None:
        venue = normalize_venue(venue)
        async with self._lock:
            return await asyncio.to_thread(self._get, venue)

    async def set(self, venue: str, creds: ApiCredentials) -> None:
        venue = normalize_venue(venue)
        creds = check_credentials(creds)
        async with self._lock:
            await asyncio.to_thread(self._set, venue, creds)
        log.info("API keys for %s saved in %s", venue, self.status.name)

    async def delete(self, venue: str) -> None:
        venue = normalize_venue(venue)
        async with self._lock:
            await asyncio.to_thread(self._delete, venue)
        log.info("API keys for %s removed from %s", venue, self.status.name)

    async def venues_with_keys(self) -> list[str]:
        async with self._lock:
            return sorted(await asyncio.to_thread(self._read_index))

    def close(self) -> None:
        self._backend = None  # nothing secret is cached; this only stops further use

    # -- blocking parts, run in a worker thread

    def _entry_service(self, venue: str) -> str:
        return f"{self.service}/{venue}"

    def _get(self, venue: str) -> ApiCredentials | None:
        target = self._entry_service(venue)
        raw = self._call(f"reading the API keys for {venue}", lambda b: b.get_password(target, _ENTRY_USER))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != _FORMAT:
                raise ValueError("unknown format")
            return credentials_from_dict(data)
        except ValueError:
            pass
        raise SecretStoreError(
            f"The keyring entry for {venue} is not in the format Meridian Terminal writes; "
            "remove the keys for this venue and enter them again."
        )

    def _set(self, venue: str, creds: ApiCredentials) -> None:
        payload = json.dumps({"v": _FORMAT, **credentials_to_dict(creds)}, separators=(",", ":"))
        if self.status.backend == "keyring.backends.Windows.WinVaultKeyring" and (
            len(payload.encode("utf-16-le")) > _WINDOWS_BLOB_LIMIT
        ):
            raise SecretStoreError(
                f"The API keys for {venue} are too long for Windows Credential Locker (about 1,200 characters "
                "in all); use an HMAC or Ed25519 key instead of an RSA one, or the encrypted vault."
            )
        index = self._read_index()
        added = venue not in index
        if added:
            self._write_index(index | {venue})
        try:
            self._call(
                f"saving the API keys for {venue}",
                lambda b: b.set_password(self._entry_service(venue), _ENTRY_USER, payload),
            )
        except SecretStoreError:
            if added:
                try:
                    self._write_index(self._read_index() - {venue})
                except SecretStoreError:
                    log.warning("Could not take %s back out of the keyring's venue list", venue)
            raise

    def _delete(self, venue: str) -> None:
        target = self._entry_service(venue)
        action = f"removing the API keys for {venue}"

        def delete(b: KeyringBackend) -> bool:
            try:
                b.delete_password(target, _ENTRY_USER)
            except keyring.errors.PasswordDeleteError:
                # keyring's way of saying "not found", but also used for real failures on some backends.
                return b.get_password(target, _ENTRY_USER) is None
            return True

        if not self._call(action, delete):
            raise KeyringAccessError(f"The system keyring did not remove the API keys for {venue}; try again.")
        index = self._read_index()
        if venue in index:
            self._write_index(index - {venue})

    def _read_index(self) -> set[str]:
        raw = self._call("reading the list of venues", lambda b: b.get_password(self.service, _INDEX_USER))
        if raw is None:
            return set()
        try:
            data = json.loads(raw)
            venues = data["venues"] if isinstance(data, dict) and data.get("v") == _FORMAT else None
            if isinstance(venues, list) and all(isinstance(v, str) for v in venues):
                return set(venues)
        except (ValueError, KeyError):
            pass
        # The index holds no secret; rewriting it on the next change is the repair.
        log.warning("The keyring's list of venues with keys is unreadable; starting a new one")
        return set()

    def _write_index(self, venues: set[str]) -> None:
        payload = json.dumps({"v": _FORMAT, "venues": sorted(venues)}, separators=(",", ":"))
        self._call("saving the list of venues", lambda b: b.set_password(self.service, _INDEX_USER, payload))

    def _call(self, action: str, fn: Callable[[KeyringBackend], T]) -> T:
        """Run one keyring call; turn any failure into a `KeyringAccessError` that holds no secret.

        The original exception's text is never quoted (a backend may echo what
        it was given), only its type; and the error is raised outside the
        `except` block so the original is not chained onto it either.
        """
        backend = self._backend
        if backend is None:
            raise StoreClosedError("The keyring key store was closed.")
        try:
            return fn(backend)
        except keyring.errors.KeyringLocked:
            failure = KeyringAccessError(
                f"The system keyring ({self.status.name}) is locked, or the unlock prompt was dismissed, "
                f"while {action}; unlock it and try again."
            )
        except Exception as exc:  # noqa: BLE001  (D-Bus, Keychain and Windows errors all end here)
            failure = KeyringAccessError(
                f"The system keyring ({self.status.name}) failed while {action} ({type(exc).__name__}). "
                "Check that it is running and unlocked, then try again."
            )
        log.warning("%s", failure)
        raise failure
