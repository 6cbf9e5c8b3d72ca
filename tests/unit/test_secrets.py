"""API key storage: masking, the three stores, keyring backend detection, the vault file, and no leaks.

Every secret used here is fake and carries MARKER, so a leak into an error
message, a repr or a log record is caught by searching for it. Credentials are
compared with `same()` so a failing assertion never prints their fields.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import logging
import os
import stat
import traceback
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import SecretService, chainer, fail, null

from app.secrets import store as secrets_store
from app.secrets import (
    SECURE_BACKENDS,
    ApiCredentials,
    BackendStatus,
    InvalidCredentialsError,
    KdfParams,
    KeyringAccessError,
    KeyringSecretStore,
    MemorySecretStore,
    NoSecureKeyringError,
    SecretStore,
    SecretStoreError,
    StoreClosedError,
    StoreKind,
    VaultCorruptError,
    VaultError,
    VaultExistsError,
    VaultNotFoundError,
    VaultSecretStore,
    VaultVersionError,
    WrongPasswordError,
    backend_status,
    mask,
    open_secret_store,
    resolve_backend,
    vault_exists,
    vault_path,
)

MARKER = "ZZLEAKMARKER93"
FAST = KdfParams(time_cost=1, memory_cost=256, parallelism=1)  # Argon2id, cheap enough for tests
PASSWORD = f"correct horse {MARKER} battery"


def creds(n: int = 1, passphrase: bool = True) -> ApiCredentials:
    return ApiCredentials(
        api_key=f"AK{n:02d}abcdefgh{MARKER}ijklmnop",
        secret=f"SK{n:02d}-{MARKER}-secret-value",
        passphrase=f"PP{n:02d}{MARKER}" if passphrase else "",
    )


def same(a: ApiCredentials | None, b: ApiCredentials | None) -> bool:
    """Equality without pytest's field-by-field diff (which would print the values)."""
    return bool(a == b)


def assert_no_leak(*texts: object) -> None:
    for text in texts:
        assert MARKER not in str(text), "a secret leaked (marker found)"


def assert_exc_clean(exc: BaseException) -> None:
    assert_no_leak(str(exc), repr(exc), "".join(traceback.format_exception(exc)))


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    assert_no_leak(caplog.text)
    for record in caplog.records:
        assert_no_leak(record.getMessage(), record.args)


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------- fake keyring backends

ENTRY = ("meridian-terminal/binance", "api-credentials")
INDEX = ("meridian-terminal", "venues")

Failure = Callable[[str, str, str], BaseException | None]  # (operation, service, username) -> error to raise


class DictKeyring(KeyringBackend):
    """An in-memory backend standing in for an OS keyring (trusted only inside tests via `trusted`)."""

    priority = -10  # negative: keyring's own discovery never picks this class

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[tuple[str, str], str] = {}
        self.failure: Failure = lambda op, service, user: None

    def _check(self, op: str, service: str, username: str) -> None:
        error = self.failure(op, service, username)
        if error is not None:
            raise error

    def get_password(self, service: str, username: str) -> str | None:
        self._check("get", service, username)
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._check("set", service, username)
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._check("delete", service, username)
        if (service, username) not in self.data:
            raise keyring.errors.PasswordDeleteError("No such password!")
        del self.data[(service, username)]


class PlaintextKeyring(DictKeyring):
    """Shaped like keyrings.alt's PlaintextKeyring: a backend that writes passwords to a plain file."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> DictKeyring:
    monkeypatch.setitem(SECURE_BACKENDS, class_name(DictKeyring), "Test keyring")
    return DictKeyring()


@pytest.fixture
def global_keyring() -> Iterator[Callable[[KeyringBackend], None]]:
    """Set keyring's process-wide backend inside a test; the previous one comes back afterwards."""
    previous = keyring.get_keyring()
    yield keyring.set_keyring
    keyring.set_keyring(previous)


# --------------------------------------------------------------------------- credentials and masking


def test_mask_shows_ends_of_long_keys_only() -> None:
    assert mask("abcdefghijklmnopqrstuvwxyz") == "abcd…wxyz"
    assert mask("abcdefghijklmno") == "••••"  # 15 characters: too short to show anything
    assert mask("abcdefghijklmnopqrstuvwxyz", secret=True) == "••••"
    assert mask("x" * 200, secret=True) == mask("y", secret=True)  # not even the length
    assert mask("") == ""


def test_credentials_repr_and_str_are_masked() -> None:
    c = creds()
    shown = [repr(c), str(c), f"{c}", repr([c]), repr({"binance": c}), "%s" % (c,)]
    for text in shown:
        assert_no_leak(text)
    assert repr(c) == "ApiCredentials(api_key='AK01…mnop', secret='••••', passphrase='••••')"
    assert repr(ApiCredentials("key", "secret")) == "ApiCredentials(api_key='••••', secret='••••', passphrase='')"


def test_credentials_are_trimmed_but_the_passphrase_is_kept_as_typed() -> None:
    c = ApiCredentials("  key-123\n", "\tsecret-456\r\n", " pass phrase ")
    assert (c.api_key, c.secret, c.passphrase) == ("key-123", "secret-456", " pass phrase ")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("", f"{MARKER}"), "API key is empty"),
        ((f"{MARKER}", "   "), "API secret is empty"),
        ((f"{MARKER}", 12345), "API secret must be text"),
        ((f"{MARKER}", f"{MARKER}", None), "API passphrase must be text"),
    ],
)
def test_invalid_credentials_say_what_is_wrong_without_the_values(args: tuple, words: str) -> None:
    with pytest.raises(InvalidCredentialsError) as info:
        ApiCredentials(*args)
    assert words in str(info.value)
    assert_exc_clean(info.value)


def test_credentials_equality_and_a_failing_assert_does_not_print_them() -> None:
    assert same(creds(1), creds(1))
    assert not same(creds(1), creds(2))
    assert creds(1) != "not credentials"
    assert len({creds(1), creds(1), creds(2)}) == 2
    with pytest.raises(AssertionError) as info:
        assert creds(1) == creds(2)  # pytest's own assertion report
    assert_no_leak(str(info.value))


# --------------------------------------------------------------------------- the contract, for every store


@pytest.fixture(params=["session", "vault", "keyring"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, trusted: DictKeyring) -> SecretStore:
    if request.param == "session":
        return MemorySecretStore()
    if request.param == "vault":
        return await VaultSecretStore.create(tmp_path / "keys.vault", PASSWORD, kdf=FAST)
    return KeyringSecretStore(backend=trusted)


async def test_round_trip_update_and_delete(store: SecretStore) -> None:
    assert isinstance(store, SecretStore)
    assert await store.get("binance") is None
    assert await store.venues_with_keys() == []

    await store.set("binance", creds(1))
    await store.set("okx", creds(2))
    await store.set("gate", creds(3, passphrase=False))
    assert same(await store.get("binance"), creds(1))
    assert same(await store.get("okx"), creds(2))
    assert (await store.get("gate")).passphrase == ""  # type: ignore[union-attr]
    assert await store.venues_with_keys() == ["binance", "gate", "okx"]

    await store.set("binance", creds(4))
    assert same(await store.get("binance"), creds(4))

    await store.delete("okx")
    await store.delete("okx")  # deleting what is not there is not an error
    assert await store.get("okx") is None
    assert await store.venues_with_keys() == ["binance", "gate"]


async def test_venue_ids_are_normalised_and_checked(store: SecretStore) -> None:
    await store.set(" Binance ", creds())
    assert same(await store.get("binance"), creds())
    assert await store.venues_with_keys() == ["binance"]
    for bad in ["", "binance/../x", "bin ance", "9gate", 42]:
        with pytest.raises(InvalidCredentialsError):
            await store.get(bad)  # type: ignore[arg-type]


async def test_only_credentials_can_be_stored(store: SecretStore) -> None:
    with pytest.raises(InvalidCredentialsError):
        await store.set("binance", {"api_key": "k", "secret": "s"})  # type: ignore[arg-type]


async def test_concurrent_writes_are_all_kept(store: SecretStore) -> None:
    venues = [f"venue{i}" for i in range(8)]
    await asyncio.gather(*(store.set(v, creds(i)) for i, v in enumerate(venues)))
    assert await store.venues_with_keys() == sorted(venues)
    for i, v in enumerate(venues):
        assert same(await store.get(v), creds(i))


async def test_a_closed_store_refuses_work(store: SecretStore) -> None:
    await store.set("binance", creds())
    store.close()
    with pytest.raises(StoreClosedError):
        await store.get("binance")


async def test_store_kinds() -> None:
    assert MemorySecretStore().kind is StoreKind.SESSION
    assert KeyringSecretStore.kind is StoreKind.KEYRING
    assert VaultSecretStore.kind is StoreKind.VAULT


# --------------------------------------------------------------------------- keyring backend detection


def test_fail_backend_is_not_secure_and_the_explanation_offers_the_choices() -> None:
    status = backend_status(fail.Keyring())
    assert isinstance(status, BackendStatus)
    assert status.secure is False
    assert status.name == "none"
    assert status.backend == "keyring.backends.fail.Keyring"
    text = status.explanation
    assert "cannot be saved securely" in text
    assert "for this session only" in text and "encrypted vault file" in text and "master password" in text
    assert text.endswith(".")


def test_null_backend_is_not_secure() -> None:
    status = backend_status(null.Keyring())
    assert not status.secure
    assert "switched off" in status.explanation


def test_a_plaintext_backend_is_refused_and_never_written() -> None:
    plain = PlaintextKeyring()
    status = backend_status(plain)
    assert not status.secure
    assert status.name == "keyrings.alt.file.PlaintextKeyring"
    assert "keyrings.alt.file.PlaintextKeyring" in status.explanation and "unencrypted" in status.explanation

    with pytest.raises(NoSecureKeyringError) as info:
        KeyringSecretStore(backend=plain)
    assert info.value.status == status
    assert str(info.value) == status.explanation
    assert plain.data == {}


def test_any_unknown_backend_is_refused(trusted: DictKeyring) -> None:
    class Lookalike(DictKeyring):  # a subclass of a trusted class is not trusted
        pass

    assert backend_status(trusted).secure
    assert not backend_status(Lookalike()).secure


def test_a_chainer_with_nothing_secure_is_not_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [PlaintextKeyring(), null.Keyring()])
    chosen, status = resolve_backend(chainer.ChainerBackend())
    assert chosen is None
    assert not status.secure
    assert "keyrings.alt.file.PlaintextKeyring" in status.explanation


def test_a_chainer_uses_its_secure_member_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets_store, "_viable", lambda backend: None)  # reachable, as on a desktop
    secret_service = SecretService.Keyring()
    plain = PlaintextKeyring()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [plain, secret_service])
    chosen, status = resolve_backend(chainer.ChainerBackend())
    assert chosen is secret_service  # writes can never fall through to the plaintext one
    assert status.secure and status.name == "Secret Service"
    assert "keyrings.alt.file.PlaintextKeyring" in status.explanation  # named as not used


def test_a_secure_backend_that_cannot_be_reached_is_not_secure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    status = backend_status(SecretService.Keyring())
    assert not status.secure
    assert status.name == "Secret Service"
    assert "cannot be reached" in status.explanation


async def test_the_default_backend_is_keyrings_own(global_keyring, tmp_path: Path) -> None:  # noqa: ANN001
    global_keyring(fail.Keyring())
    assert not backend_status().secure
    with pytest.raises(NoSecureKeyringError) as info:
        await open_secret_store(tmp_path, StoreKind.KEYRING)
    assert not info.value.status.secure
    assert "master password" in str(info.value)

    plain = PlaintextKeyring()
    global_keyring(plain)
    with pytest.raises(NoSecureKeyringError):
        await open_secret_store(tmp_path, "keyring")
    assert plain.data == {}


# --------------------------------------------------------------------------- the keyring store


async def test_keyring_layout_one_entry_per_venue_and_an_index(trusted: DictKeyring) -> None:
    store = KeyringSecretStore(backend=trusted)
    await store.set("binance", creds())
    assert set(trusted.data) == {ENTRY, INDEX}
    assert json.loads(trusted.data[INDEX]) == {"v": 1, "venues": ["binance"]}
    assert_no_leak(trusted.data[INDEX])
    entry = json.loads(trusted.data[ENTRY])
    assert entry["v"] == 1 and same(ApiCredentials(entry["api_key"], entry["secret"], entry["passphrase"]), creds())

    other = KeyringSecretStore(backend=trusted)  # a new session reads the same keyring
    assert same(await other.get("binance"), creds())
    assert await other.venues_with_keys() == ["binance"]

    await other.delete("binance")
    assert trusted.data == {INDEX: json.dumps({"v": 1, "venues": []}, separators=(",", ":"))}


async def test_keyring_service_name_is_configurable(trusted: DictKeyring) -> None:
    store = KeyringSecretStore("meridian-test", backend=trusted)
    await store.set("binance", creds())
    assert set(trusted.data) == {("meridian-test/binance", "api-credentials"), ("meridian-test", "venues")}


async def test_keyring_write_failure_leaves_no_hidden_secret_and_no_leak(
    trusted: DictKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = KeyringSecretStore(backend=trusted)
    payload = json.dumps({"v": 1, "api_key": creds().api_key, "secret": creds().secret})

    def failure(op: str, service: str, user: str) -> BaseException | None:
        if op == "set" and (service, user) == ENTRY:
            return keyring.errors.PasswordSetError(f"could not store {payload} for {creds().secret}")
        return None

    trusted.failure = failure
    with pytest.raises(KeyringAccessError) as info:
        await store.set("binance", creds())
    assert "saving the API keys for binance" in str(info.value)
    assert "(PasswordSetError)" in str(info.value)
    assert_exc_clean(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert await store.venues_with_keys() == []  # the index was rolled back
    assert ENTRY not in trusted.data
    assert_logs_clean(caplog)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (keyring.errors.KeyringLocked(f"locked {MARKER}"), "is locked"),
        (keyring.errors.InitError(f"no collection {MARKER}"), "(InitError)"),
        (RuntimeError(f"D-Bus said {MARKER}"), "(RuntimeError)"),
        (OSError(5, f"I/O error {MARKER}"), "(OSError)"),
    ],
)
async def test_keyring_read_failures_are_sentences_without_secrets(
    trusted: DictKeyring, caplog: pytest.LogCaptureFixture, error: BaseException, words: str
) -> None:
    caplog.set_level(logging.DEBUG)
    store = KeyringSecretStore(backend=trusted)
    await store.set("binance", creds())
    trusted.failure = lambda op, service, user: error if op == "get" else None
    with pytest.raises(KeyringAccessError) as info:
        await store.get("binance")
    assert words in str(info.value)
    assert "try again" in str(info.value)
    assert_exc_clean(info.value)
    assert_logs_clean(caplog)


async def test_keyring_delete_failure_keeps_the_venue_listed(trusted: DictKeyring) -> None:
    store = KeyringSecretStore(backend=trusted)
    await store.set("binance", creds())
    # keyring reports "not found" for some real failures too: the entry is still there.
    trusted.failure = lambda op, s, u: keyring.errors.PasswordDeleteError("denied") if op == "delete" else None
    with pytest.raises(KeyringAccessError, match="did not remove"):
        await store.delete("binance")
    trusted.failure = lambda op, s, u: None
    assert await store.venues_with_keys() == ["binance"]
    assert same(await store.get("binance"), creds())


async def test_keyring_entry_in_a_foreign_format_is_reported_without_its_content(trusted: DictKeyring) -> None:
    store = KeyringSecretStore(backend=trusted)
    trusted.data[ENTRY] = f"not json {MARKER}"
    with pytest.raises(SecretStoreError, match="not in the format") as info:
        await store.get("binance")
    assert_exc_clean(info.value)
    trusted.data[ENTRY] = json.dumps({"v": 1, "api_key": MARKER})
    with pytest.raises(SecretStoreError, match="enter them again"):
        await store.get("binance")


async def test_keyring_unreadable_index_is_rebuilt(trusted: DictKeyring) -> None:
    store = KeyringSecretStore(backend=trusted)
    trusted.data[INDEX] = "{garbage"
    assert await store.venues_with_keys() == []
    await store.set("binance", creds())
    assert await store.venues_with_keys() == ["binance"]


async def test_keyring_calls_run_off_the_event_loop(trusted: DictKeyring) -> None:
    loop_thread = __import__("threading").get_ident()
    seen: list[int] = []

    def failure(op: str, service: str, user: str) -> None:
        seen.append(__import__("threading").get_ident())

    trusted.failure = failure
    store = KeyringSecretStore(backend=trusted)
    await store.set("binance", creds())
    await store.get("binance")
    assert seen and loop_thread not in seen


# --------------------------------------------------------------------------- the vault file


@pytest.fixture
async def vault(tmp_path: Path) -> VaultSecretStore:
    store = await VaultSecretStore.create(tmp_path / "keys.vault", PASSWORD, kdf=FAST)
    await store.set("binance", creds(1))
    return store


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_vault_round_trip_through_a_new_session(vault: VaultSecretStore) -> None:
    await vault.set("okx", creds(2))
    reopened = await VaultSecretStore.open(vault.path, PASSWORD)
    assert same(await reopened.get("binance"), creds(1))
    assert same(await reopened.get("okx"), creds(2))
    assert await reopened.venues_with_keys() == ["binance", "okx"]


async def test_vault_file_format_is_versioned_and_holds_no_plaintext(vault: VaultSecretStore) -> None:
    raw = vault.path.read_bytes()
    assert MARKER.encode() not in raw and b"binance" not in raw
    doc = json.loads(raw)
    assert doc["format"] == "meridian-terminal-vault" and doc["version"] == 1
    kdf = doc["kdf"]
    assert (kdf["name"], kdf["time_cost"], kdf["memory_cost"], kdf["parallelism"]) == ("argon2id", 1, 256, 1)
    assert len(base64.b64decode(kdf["salt"])) == 16
    assert doc["cipher"]["name"] == "aes-256-gcm"
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 12


async def test_vault_default_costs_are_argon2id_t3_64mib_p2(tmp_path: Path) -> None:
    assert KdfParams() == KdfParams(time_cost=3, memory_cost=65536, parallelism=2)
    store = await VaultSecretStore.create(tmp_path / "keys.vault", PASSWORD)
    kdf = load(store.path)["kdf"]
    assert (kdf["time_cost"], kdf["memory_cost"], kdf["parallelism"]) == (3, 65536, 2)


async def test_vault_every_write_has_a_fresh_nonce_and_the_same_salt(vault: VaultSecretStore) -> None:
    before = load(vault.path)
    await vault.set("binance", creds(1))
    after = load(vault.path)
    assert after["cipher"]["nonce"] != before["cipher"]["nonce"]
    assert after["ciphertext"] != before["ciphertext"]
    assert after["kdf"] == before["kdf"]


async def test_vault_size_does_not_tell_how_many_keys_it_holds(tmp_path: Path) -> None:
    store = await VaultSecretStore.create(tmp_path / "keys.vault", PASSWORD, kdf=FAST)
    empty = len(load(store.path)["ciphertext"])
    await store.set("binance", creds(1))
    await store.set("okx", creds(2))
    assert len(load(store.path)["ciphertext"]) == empty


async def test_vault_wrong_password_is_clear_and_changes_nothing(
    vault: VaultSecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = vault.path.read_bytes()
    with pytest.raises(WrongPasswordError) as info:
        await VaultSecretStore.open(vault.path, f"not the password {MARKER}")
    assert "master password is wrong" in str(info.value) and "nothing was changed" in str(info.value)
    assert_exc_clean(info.value)
    assert vault.path.read_bytes() == before
    assert_logs_clean(caplog)
    assert same(await (await VaultSecretStore.open(vault.path, PASSWORD)).get("binance"), creds(1))


def tamper(path: Path, edit: Callable[[dict], None]) -> None:
    doc = load(path)
    edit(doc)
    path.write_text(json.dumps(doc))


def flip_ciphertext(doc: dict) -> None:
    data = bytearray(base64.b64decode(doc["ciphertext"]))
    data[5] ^= 0x01
    doc["ciphertext"] = base64.b64encode(bytes(data)).decode()


def flip_nonce(doc: dict) -> None:
    data = bytearray(base64.b64decode(doc["cipher"]["nonce"]))
    data[0] ^= 0x80
    doc["cipher"]["nonce"] = base64.b64encode(bytes(data)).decode()


@pytest.mark.parametrize("edit", [flip_ciphertext, flip_nonce], ids=["ciphertext", "nonce"])
async def test_vault_tampering_is_detected_on_open_and_on_read(vault: VaultSecretStore, edit) -> None:  # noqa: ANN001
    tamper(vault.path, edit)
    tampered = vault.path.read_bytes()
    with pytest.raises(VaultCorruptError, match="damaged or was altered") as info:
        await VaultSecretStore.open(vault.path, PASSWORD)
    assert_exc_clean(info.value)
    with pytest.raises(VaultCorruptError):
        await vault.get("binance")  # an open store notices too
    with pytest.raises(VaultCorruptError):
        await vault.set("okx", creds(2))  # and never overwrites the evidence
    assert vault.path.read_bytes() == tampered


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"format": "something-else"}', b'{"format": "meridian-terminal-vault"}'],
    ids=["empty", "not-json", "list", "other-format", "no-version"],
)
async def test_vault_that_is_not_a_vault_is_reported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keys.vault"
    path.write_bytes(content)
    with pytest.raises(VaultCorruptError, match="Restore it from a backup"):
        await VaultSecretStore.open(path, PASSWORD)


async def test_vault_from_a_newer_version_asks_for_an_update(vault: VaultSecretStore) -> None:
    tamper(vault.path, lambda doc: doc.update(version=2))
    with pytest.raises(VaultVersionError, match="newer version of Meridian Terminal"):
        await VaultSecretStore.open(vault.path, PASSWORD)


async def test_vault_with_absurd_costs_is_refused_before_deriving(vault: VaultSecretStore) -> None:
    tamper(vault.path, lambda doc: doc["kdf"].update(memory_cost=2**40))
    with pytest.raises(VaultCorruptError, match="costs out of range"):
        await VaultSecretStore.open(vault.path, PASSWORD)


async def test_vault_header_is_authenticated(vault: VaultSecretStore) -> None:
    # A changed cost gives a different key, so it reads as a wrong password (see the module's notes).
    tamper(vault.path, lambda doc: doc["kdf"].update(time_cost=2))
    with pytest.raises(WrongPasswordError):
        await VaultSecretStore.open(vault.path, PASSWORD)


async def test_vault_file_is_private(vault: VaultSecretStore) -> None:
    assert mode(vault.path) == 0o600
    await vault.set("okx", creds(2))
    assert mode(vault.path) == 0o600
    os.chmod(vault.path, 0o644)
    await VaultSecretStore.open(vault.path, PASSWORD)  # opening tightens a loosened file
    assert mode(vault.path) == 0o600


async def test_vault_folder_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "data" / "keys.vault"
    await VaultSecretStore.create(path, PASSWORD, kdf=FAST)
    assert mode(path.parent) == 0o700 and mode(path) == 0o600


@pytest.mark.parametrize("failing", ["fsync", "replace"])
async def test_vault_failed_write_leaves_the_old_file_intact(
    vault: VaultSecretStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failing: str
) -> None:
    caplog.set_level(logging.DEBUG)
    before = vault.path.read_bytes()

    def broken(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(VaultError, match="No space left on device") as info:
        await vault.set("okx", creds(2))
    monkeypatch.undo()

    assert "still holds the keys it had before" in str(info.value)
    assert_exc_clean(info.value)
    assert_logs_clean(caplog)
    assert vault.path.read_bytes() == before
    assert [p.name for p in vault.path.parent.iterdir()] == ["keys.vault"]  # no temporary file left
    reopened = await VaultSecretStore.open(vault.path, PASSWORD)
    assert await reopened.venues_with_keys() == ["binance"]


async def test_vault_create_and_open_guard_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.vault"
    with pytest.raises(VaultNotFoundError):
        await VaultSecretStore.open(path, PASSWORD)
    with pytest.raises(VaultError, match="at least 8 characters"):
        await VaultSecretStore.create(path, "short", kdf=FAST)
    assert not path.exists()
    await VaultSecretStore.create(path, PASSWORD, kdf=FAST)
    with pytest.raises(VaultExistsError):
        await VaultSecretStore.create(path, PASSWORD, kdf=FAST)
    with pytest.raises(VaultError, match="Enter the vault's master password"):
        await VaultSecretStore.open(path, "")


async def test_vault_password_is_unicode_normalised(tmp_path: Path) -> None:
    password = "pässwörd-für-dich"
    store = await VaultSecretStore.create(tmp_path / "keys.vault", unicodedata.normalize("NFC", password), kdf=FAST)
    await store.set("binance", creds())
    reopened = await VaultSecretStore.open(store.path, unicodedata.normalize("NFD", password))
    assert same(await reopened.get("binance"), creds())


async def test_vault_change_password(vault: VaultSecretStore) -> None:
    salt = load(vault.path)["kdf"]["salt"]
    with pytest.raises(WrongPasswordError):
        await vault.change_password("not the password", "a new password", kdf=FAST)
    await vault.change_password(PASSWORD, "a new password", kdf=FAST)
    assert load(vault.path)["kdf"]["salt"] != salt
    assert same(await vault.get("binance"), creds(1))  # the open store keeps working
    with pytest.raises(WrongPasswordError):
        await VaultSecretStore.open(vault.path, PASSWORD)
    reopened = await VaultSecretStore.open(vault.path, "a new password")
    assert same(await reopened.get("binance"), creds(1))


async def test_vault_rekeyed_by_another_session_asks_to_reopen(vault: VaultSecretStore) -> None:
    other = await VaultSecretStore.open(vault.path, PASSWORD)
    await other.change_password(PASSWORD, "a new password", kdf=FAST)
    with pytest.raises(VaultError, match="open it again"):
        await vault.get("binance")


# --------------------------------------------------------------------------- the factory


async def test_factory_session_store(tmp_path: Path) -> None:
    store = await open_secret_store(tmp_path, StoreKind.SESSION)
    assert isinstance(store, MemorySecretStore)
    assert list(tmp_path.iterdir()) == []  # nothing touches the disk


async def test_factory_vault_is_created_then_unlocked(tmp_path: Path) -> None:
    assert not vault_exists(tmp_path)
    with pytest.raises(VaultError, match="master password"):
        await open_secret_store(tmp_path, "vault")
    store = await open_secret_store(tmp_path, "vault", password=PASSWORD, kdf=FAST)
    assert isinstance(store, VaultSecretStore) and store.path == vault_path(tmp_path) == tmp_path / "keys.vault"
    assert vault_exists(tmp_path)
    await store.set("binance", creds())
    again = await open_secret_store(tmp_path, StoreKind.VAULT, password=PASSWORD)
    assert same(await again.get("binance"), creds())
    with pytest.raises(WrongPasswordError):
        await open_secret_store(tmp_path, StoreKind.VAULT, password="wrong password")


async def test_factory_refuses_an_unknown_choice(tmp_path: Path) -> None:
    with pytest.raises(SecretStoreError, match="keyring, session or vault"):
        await open_secret_store(tmp_path, "plaintext")


# --------------------------------------------------------------------------- no leaks anywhere


async def test_no_secret_reaches_the_logs_on_any_path(
    tmp_path: Path, trusted: DictKeyring, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stores: list[SecretStore] = [
        MemorySecretStore(),
        KeyringSecretStore(backend=trusted),
        await open_secret_store(tmp_path, "vault", password=PASSWORD, kdf=FAST),
    ]
    for store in stores:
        await store.set("binance", creds())
        await store.get("binance")
        await store.venues_with_keys()
        await store.delete("binance")
    with pytest.raises(WrongPasswordError):
        await open_secret_store(tmp_path, "vault", password=f"wrong {MARKER}")
    assert caplog.records  # the stores do log what they do ...
    assert_logs_clean(caplog)  # ... but never a value
