"""Settings → API keys: keys reach only the secret store, shown masked, removable; no silent fallback."""

from __future__ import annotations

import keyring.backends.fail
from PySide6.QtCore import Qt

from app.secrets import MemorySecretStore, backend_status, vault_path
from tests.ui.conftest import run
from ui.keys_dialog import ApiKeysDialog

KEY = "AbCdEfGhIjKlMnOpQrStUvWx0123456789"
SECRET = "s3cr3t-VALUE-that-must-never-show-up"


def test_keys_are_saved_masked_and_removed(open_window, qtbot) -> None:
    window = open_window()
    store = MemorySecretStore()
    window.runtime.secrets = store
    dialog = window.open_keys_dialog()
    qtbot.waitUntil(dialog.ready.done)
    assert dialog.form.isEnabled()
    assert dialog.stored.text() == "no keys stored"
    dialog.api_key.setText(KEY)
    dialog.secret.setText(SECRET)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "saved" in dialog.message.text())
    creds = run(qtbot, store.get("binance"))
    assert creds is not None and creds.api_key == KEY and creds.secret == SECRET
    assert dialog.stored.text() == "key AbCd…6789, secret ••••"
    assert SECRET not in dialog.stored.text() and dialog.secret.text() == ""
    assert dialog.secret.echoMode() == dialog.secret.EchoMode.Password
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "removed" in dialog.message.text())
    assert run(qtbot, store.get("binance")) is None
    assert dialog.stored.text() == "no keys stored"


def test_bad_input_is_explained_next_to_the_field_and_kept(open_window, qtbot) -> None:
    window = open_window()
    window.runtime.secrets = MemorySecretStore()
    dialog = window.open_keys_dialog()
    qtbot.waitUntil(dialog.ready.done)
    dialog.api_key.setText("abc def")
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.secret_error.isVisible())
    assert "space" in dialog.key_error.text()
    assert "Enter the secret" in dialog.secret_error.text()
    assert dialog.api_key.text() == "abc def"  # nothing typed is lost
    assert run(qtbot, window.runtime.secrets.get("binance")) is None


def test_without_a_secure_keyring_the_user_chooses_and_a_vault_is_encrypted(open_window, qtbot, tmp_path) -> None:
    window = open_window()
    fail = keyring.backends.fail.Keyring()
    dialog = ApiKeysDialog(window.runtime, window, status_fn=lambda: backend_status(fail))
    dialog.open()
    qtbot.waitUntil(dialog.ready.done)
    assert dialog.choice.isVisible() and not dialog.form.isEnabled()
    assert "session" in dialog.status_label.text().lower() or "encrypted" in dialog.status_label.text().lower()
    dialog.vault_radio.setChecked(True)
    dialog.password.setText("short")
    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(dialog.password_error.isVisible)
    assert "at least 8" in dialog.password_error.text() and dialog.password.text() == "short"
    dialog.password.setText("correct horse battery")
    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.form.isEnabled(), timeout=20_000)
    dialog.api_key.setText(KEY)
    dialog.secret.setText(SECRET)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "saved" in dialog.message.text(), timeout=20_000)
    raw = vault_path(window.runtime.paths.data_dir).read_bytes()
    assert SECRET.encode() not in raw and KEY.encode() not in raw
    dialog.close()


def test_a_provider_key_and_the_smtp_password_are_single_values_in_the_same_store(open_window, qtbot) -> None:
    from app.secrets import get_token

    window = open_window()
    store = MemorySecretStore()
    window.runtime.secrets = store
    dialog = window.open_keys_dialog()
    qtbot.waitUntil(dialog.ready.done)
    dialog.venue.setCurrentIndex(dialog.venue.findData("marketdata_polygon"))
    qtbot.waitUntil(lambda: dialog.stored.text() == "not set")
    assert not dialog.secret.isVisible() and dialog.save_button.text() == "Save"
    dialog.api_key.setText(KEY)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Polygon API key saved" in dialog.message.text())
    assert run(qtbot, get_token(store, "marketdata_polygon")) == KEY
    assert dialog.stored.text() == "AbCd…6789 (set)"

    dialog.venue.setCurrentIndex(dialog.venue.findData("notify_smtp"))
    qtbot.waitUntil(lambda: dialog.stored.text() == "not set")
    dialog.api_key.setText(SECRET)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "SMTP password saved" in dialog.message.text())
    assert dialog.stored.text() == "•••• (set)"  # a password never shows its ends
    assert run(qtbot, get_token(store, "notify_smtp")) == SECRET
