"""The encrypted key vault: the user's alternative when the OS has no secure keyring.

One JSON file, format version 1 (every byte string is standard base64):

    {
      "format": "meridian-terminal-vault",
      "version": 1,
      "kdf": {"name": "argon2id", "argon2_version": 19, "time_cost": 3,
              "memory_cost": 65536, "parallelism": 2, "salt": "<16 bytes>"},
      "check": "<32 bytes>",
      "cipher": {"name": "aes-256-gcm", "nonce": "<12 bytes>"},
      "ciphertext": "<AES-256-GCM output, tag included>"
    }

Argon2id (memory_cost in KiB) turns the master password (NFC-normalised,
UTF-8) and the salt into 32 bytes; HKDF-SHA256 splits those into the AES key
and `check`, a password verifier that tells "wrong password" apart from "the
file was damaged or altered" (a verifier costs an attacker nothing extra: each
guess still needs a full Argon2id run). Altering the salt, costs or verifier
therefore reads as a wrong password; altering the encrypted part reads as
damage. The header (everything but `cipher`
and `ciphertext`, as sorted compact JSON) is the GCM associated data, so
changing the parameters is detected too. The plaintext is
`{"venues": {"<venue>": {"api_key", "secret", "passphrase"}}}` padded with
spaces to a multiple of 512 bytes, so the file size does not tell how many keys
it holds.

Every write draws a fresh 96-bit nonce (the key stays until the password
changes), goes to a temporary file in the same folder with mode 0600, is
fsynced and then atomically replaces the old file: a failed write leaves the
previous vault intact. The salt and key change only with `change_password`.
The vault is for one process at a time (Meridian Terminal runs once per user).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import stat
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from argon2.low_level import ARGON2_VERSION, Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.secrets.store import (
    ApiCredentials,
    SecretStoreError,
    StoreClosedError,
    StoreKind,
    check_credentials,
    credentials_from_dict,
    credentials_to_dict,
    normalize_venue,
)

log = logging.getLogger("app.secrets")

FORMAT_NAME = "meridian-terminal-vault"
FORMAT_VERSION = 1
MIN_PASSWORD_LENGTH = 8
_SALT_BYTES = 16
_NONCE_BYTES = 12
_KEY_BYTES = 32
_PAD_TO = 512
_HKDF_INFO = b"meridian-terminal vault v1: aes-256-gcm key, password check"


class VaultError(SecretStoreError):
    """The key vault could not be opened, read or saved."""


class WrongPasswordError(VaultError):
    pass


class VaultCorruptError(VaultError):
    pass


class VaultVersionError(VaultError):
    pass


class VaultExistsError(VaultError):
    pass


class VaultNotFoundError(VaultError):
    pass


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id costs. The defaults suit a desktop (about half a second); tests pass lower ones."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024  # KiB, i.e. 64 MiB
    parallelism: int = 2

    def __post_init__(self) -> None:
        if not _params_in_range(self.time_cost, self.memory_cost, self.parallelism):
            raise ValueError(
                "Argon2id costs out of range: time_cost 1..20, parallelism 1..16, "
                "memory_cost (KiB) from 8 x parallelism to 4 GiB"
            )


def _params_in_range(time_cost: object, memory_cost: object, parallelism: object) -> bool:
    # The upper bounds stop a doctored file from making the app allocate or spin forever.
    ints = all(type(v) is int for v in (time_cost, memory_cost, parallelism))
    return (
        ints
        and 1 <= time_cost <= 20  # type: ignore[operator]
        and 1 <= parallelism <= 16  # type: ignore[operator]
        and 8 * parallelism <= memory_cost <= 4 * 1024 * 1024  # type: ignore[operator]
    )


@dataclass(frozen=True, slots=True)
class _Keys:
    header: dict[str, Any]  # what the keys belong to: format, version, kdf (with salt) and check
    aead: AESGCM

    @property
    def aad(self) -> bytes:
        return json.dumps(self.header, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def _password_bytes(password: object) -> bytes:
    if not isinstance(password, str) or not password:
        raise VaultError("Enter the vault's master password.")
    # The same password typed on macOS (decomposed accents) and elsewhere must open the vault.
    return unicodedata.normalize("NFC", password).encode("utf-8")


def _derive(password: bytes, salt: bytes, params: KdfParams) -> tuple[AESGCM, bytes]:
    master = hash_secret_raw(
        secret=password,
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=_KEY_BYTES,
        type=Type.ID,
        version=ARGON2_VERSION,
    )
    okm = HKDF(algorithm=hashes.SHA256(), length=2 * _KEY_BYTES, salt=None, info=_HKDF_INFO).derive(master)
    return AESGCM(okm[:_KEY_BYTES]), okm[_KEY_BYTES:]


def _new_keys(password: bytes, params: KdfParams) -> _Keys:
    salt = os.urandom(_SALT_BYTES)
    aead, check = _derive(password, salt, params)
    kdf = {"name": "argon2id", "argon2_version": ARGON2_VERSION, **asdict(params), "salt": _b64(salt)}
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kdf": kdf, "check": _b64(check)}
    return _Keys(header=header, aead=aead)


# --------------------------------------------------------------------------- the file


def _corrupt(path: Path, why: str) -> VaultCorruptError:
    return VaultCorruptError(
        f"The key vault {path} is damaged or was altered ({why}), so it cannot be opened. Restore it from "
        "a backup, or delete it and enter your API keys again."
    )


def _read_document(path: Path) -> dict[str, Any]:
    """The parsed file with its header checked; the ciphertext is not touched."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VaultNotFoundError(f"There is no key vault at {path}.") from None
    except OSError as exc:
        raise VaultError(f"Could not read the key vault {path}: {exc.strerror or type(exc).__name__}.") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise _corrupt(path, "not a Meridian Terminal vault file")
    version = doc.get("version")
    if type(version) is not int:
        raise _corrupt(path, "no format version")
    if version > FORMAT_VERSION:
        raise VaultVersionError(
            f"The key vault {path} was written by a newer version of Meridian Terminal (format {version}); "
            "update Meridian Terminal to open it."
        )
    if version != FORMAT_VERSION:
        raise _corrupt(path, f"unknown format version {version}")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    try:
        if not isinstance(kdf, dict) or kdf.get("name") != "argon2id" or kdf.get("argon2_version") != ARGON2_VERSION:
            raise ValueError("unsupported key derivation")
        if not _params_in_range(kdf.get("time_cost"), kdf.get("memory_cost"), kdf.get("parallelism")):
            raise ValueError("key derivation costs out of range")
        if len(_unb64(kdf.get("salt"))) < _SALT_BYTES or len(_unb64(doc.get("check"))) != _KEY_BYTES:
            raise ValueError("bad salt or password check")
        if not isinstance(cipher, dict) or cipher.get("name") != "aes-256-gcm":
            raise ValueError("unsupported cipher")
        if len(_unb64(cipher.get("nonce"))) != _NONCE_BYTES or len(_unb64(doc.get("ciphertext"))) < 16:
            raise ValueError("bad nonce or ciphertext")
    except (ValueError, binascii.Error) as exc:
        why = str(exc) if not isinstance(exc, binascii.Error) else "bad base64"
        raise _corrupt(path, why) from None
    return doc


def _header_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("format", "version", "kdf", "check")}


def _open_keys(path: Path, doc: dict[str, Any], password: bytes) -> _Keys:
    kdf = doc["kdf"]
    params = KdfParams(kdf["time_cost"], kdf["memory_cost"], kdf["parallelism"])
    aead, check = _derive(password, _unb64(kdf["salt"]), params)
    if not hmac.compare_digest(check, _unb64(doc["check"])):
        raise WrongPasswordError(
            f"The master password is wrong for the key vault {path}; nothing was changed. Try again."
        )
    return _Keys(header=_header_of(doc), aead=aead)


def _decrypt(path: Path, doc: dict[str, Any], keys: _Keys) -> dict[str, ApiCredentials]:
    if _header_of(doc) != keys.header:
        raise VaultError(
            f"The key vault {path} was changed by another program (perhaps a new master password); "
            "open it again with its current password."
        )
    failure: VaultError
    try:
        plain = keys.aead.decrypt(_unb64(doc["cipher"]["nonce"]), _unb64(doc["ciphertext"]), keys.aad)
    except InvalidTag:
        failure = _corrupt(path, "the contents do not match their authentication tag")
    else:
        try:
            body = json.loads(plain)
            venues = body["venues"]
            if not isinstance(venues, dict):
                raise ValueError("venues is not an object")
            return {normalize_venue(v): credentials_from_dict(c) for v, c in venues.items()}
        except (ValueError, KeyError, TypeError, SecretStoreError):
            failure = _corrupt(path, "unreadable contents")
    raise failure


def _encode(keys: _Keys, items: dict[str, ApiCredentials]) -> bytes:
    body = json.dumps({"venues": {v: credentials_to_dict(c) for v, c in sorted(items.items())}}).encode()
    body += b" " * (-len(body) % _PAD_TO)
    nonce = os.urandom(_NONCE_BYTES)
    doc = {
        **keys.header,
        "cipher": {"name": "aes-256-gcm", "nonce": _b64(nonce)},
        "ciphertext": _b64(keys.aead.encrypt(nonce, body, keys.aad)),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once; on any failure the old file stays as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), stat.S_IRUSR | stat.S_IWUSR)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _save(path: Path, data: bytes) -> None:
    failure: VaultError
    try:
        _write_atomic(path, data)
        return
    except OSError as exc:
        failure = VaultError(
            f"Could not save the key vault {path} ({exc.strerror or type(exc).__name__}); "
            "the vault still holds the keys it had before."
        )
    raise failure


def _tighten_mode(path: Path) -> None:
    if os.name == "posix" and path.stat().st_mode & 0o077:
        log.warning("The key vault %s was readable by other users; making it private", path)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


# --------------------------------------------------------------------------- the store


class VaultSecretStore:
    """API keys in an encrypted file protected by a master password.

    Open with `await VaultSecretStore.open(path, password)` or create with
    `await VaultSecretStore.create(path, password)`; both run Argon2id in a
    worker thread. The store keeps only the derived key in memory and reads
    and re-encrypts the file on every call, so the file is the one truth.
    """

    kind = StoreKind.VAULT

    def __init__(self, path: Path, keys: _Keys) -> None:  # use open() or create()
        self.path = path
        self._keys: _Keys | None = keys
        self._lock = asyncio.Lock()

    @classmethod
    async def create(
        cls, path: Path, password: str, *, kdf: KdfParams | None = None
    ) -> VaultSecretStore:
        """A new, empty vault at `path`; `VaultExistsError` if one is already there."""
        pw = _password_bytes(password)
        if len(unicodedata.normalize("NFC", password)) < MIN_PASSWORD_LENGTH:
            raise VaultError(f"Choose a master password of at least {MIN_PASSWORD_LENGTH} characters.")
        path = Path(path)
        if path.exists():
            raise VaultExistsError(f"A key vault already exists at {path}; open it with its master password.")
        keys = await asyncio.to_thread(_new_keys, pw, kdf or KdfParams())

        def make() -> None:
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise VaultError(f"Could not create the folder {path.parent} ({exc.strerror}).") from None
            _save(path, _encode(keys, {}))

        await asyncio.to_thread(make)
        log.info("Created the key vault %s", path)
        return cls(path, keys)

    @classmethod
    async def open(cls, path: Path, password: str) -> VaultSecretStore:
        """The vault at `path` unlocked; `WrongPasswordError`, `VaultCorruptError`, `VaultNotFoundError`..."""
        pw = _password_bytes(password)
        path = Path(path)

        def unlock() -> _Keys:
            doc = _read_document(path)
            keys = _open_keys(path, doc, pw)
            _decrypt(path, doc, keys)  # a damaged file is reported now, not at the first get()
            _tighten_mode(path)
            return keys

        return cls(path, await asyncio.to_thread(unlock))

    # -- the protocol

    async def get(self, venue: str) -> ApiCredentials | None:
        venue = normalize_venue(venue)
        async with self._lock:
            items = await asyncio.to_thread(self._load)
        return items.get(venue)

    async def set(self, venue: str, creds: ApiCredentials) -> None:
        venue = normalize_venue(venue)
        creds = check_credentials(creds)
        async with self._lock:
            await asyncio.to_thread(self._update, lambda items: items.__setitem__(venue, creds))
        log.info("API keys for %s saved in the key vault", venue)

    async def delete(self, venue: str) -> None:
        venue = normalize_venue(venue)
        async with self._lock:
            await asyncio.to_thread(self._update, lambda items: items.pop(venue, None))
        log.info("API keys for %s removed from the key vault", venue)

    async def venues_with_keys(self) -> list[str]:
        async with self._lock:
            return sorted(await asyncio.to_thread(self._load))

    def close(self) -> None:
        self._keys = None

    async def change_password(self, current: str, new: str, *, kdf: KdfParams | None = None) -> None:
        """Re-encrypt the vault under `new` with a fresh salt and `kdf` (default: today's costs,
        which also upgrades a vault made with weaker ones); `current` must open the file."""
        current_pw, new_pw = _password_bytes(current), _password_bytes(new)
        if len(unicodedata.normalize("NFC", new)) < MIN_PASSWORD_LENGTH:
            raise VaultError(f"Choose a master password of at least {MIN_PASSWORD_LENGTH} characters.")
        async with self._lock:
            self._current_keys()

            def rekey() -> _Keys:
                doc = _read_document(self.path)
                items = _decrypt(self.path, doc, _open_keys(self.path, doc, current_pw))
                new_keys = _new_keys(new_pw, kdf or KdfParams())
                _save(self.path, _encode(new_keys, items))
                return new_keys

            self._keys = await asyncio.to_thread(rekey)
        log.info("Changed the master password of the key vault %s", self.path)

    # -- blocking parts

    def _current_keys(self) -> _Keys:
        if self._keys is None:
            raise StoreClosedError("The key vault is locked; open it again with its master password.")
        return self._keys

    def _load(self) -> dict[str, ApiCredentials]:
        keys = self._current_keys()
        return _decrypt(self.path, _read_document(self.path), keys)

    def _update(self, change: Any) -> None:
        keys = self._current_keys()
        items = self._load()
        change(items)
        _save(self.path, _encode(keys, items))

