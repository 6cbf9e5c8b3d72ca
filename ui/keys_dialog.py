"""Settings → API keys: enter, see (masked) and remove exchange keys and the other secrets
(market-data provider keys, the SMTP password, Discord and Twilio tokens).

Keys go only to the secret store (`app.secrets`): the OS keyring, or, when the
machine has no secure keyring, what the user chooses here after reading why:
this session only, or an encrypted file with a master password. Never a silent
fallback. The dialog never blocks the window: the store's calls are awaited.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from app.secrets import (
    MIN_PASSWORD_LENGTH,
    ApiCredentials,
    BackendStatus,
    SecretStoreError,
    StoreKind,
    TOKEN_NAMES,
    backend_status,
    get_token,
    mask,
    open_secret_store,
    set_token,
    vault_exists,
)
from ui import theme

log = logging.getLogger(__name__)

EXCHANGES = {"binance": "Binance", "gate": "Gate.io", "mexc": "MEXC"}
NEEDS_PASSPHRASE: set[str] = set()  # none of these three; OKX or KuCoin would be
# Single-value secrets: one field, no secret half. The billing token is set by signing in, not typed.
SINGLE = {name: title for name, title in TOKEN_NAMES.items() if name != "billing"}
TITLES = {**EXCHANGES, **SINGLE}


def _error_label() -> QLabel:
    label = QLabel("")
    label.setStyleSheet(f"color: {theme.DOWN};")
    label.setWordWrap(True)
    label.hide()
    return label


class ApiKeysDialog(QDialog):
    def __init__(self, runtime, parent: QWidget | None = None, *,
                 status_fn: Callable[[], BackendStatus] = backend_status) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self._status_fn = status_fn
        self.setWindowTitle("API keys")
        self.setMinimumWidth(520)
        self.status_label = QLabel("Checking where keys can be kept…")
        self.status_label.setWordWrap(True)

        # The choice shown only when no secure keyring exists.
        self.choice = QGroupBox("No secure keyring: choose where keys go")
        self.session_radio = QRadioButton("Keep keys for this session only (forgotten when the terminal closes)")
        self.vault_radio = QRadioButton("Keep keys in an encrypted file protected by a master password")
        self.session_radio.setChecked(True)
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText(f"Master password, at least {MIN_PASSWORD_LENGTH} characters")
        self.password_error = _error_label()
        self.use_button = QPushButton("Use this")
        self.use_button.clicked.connect(lambda: asyncio.ensure_future(self._choose()))
        box = QVBoxLayout(self.choice)
        box.addWidget(self.session_radio)
        box.addWidget(self.vault_radio)
        box.addWidget(self.password)
        box.addWidget(self.password_error)
        box.addWidget(self.use_button)
        self.choice.hide()

        # The keys form.
        self.form = QGroupBox("Keys")
        self.venue = QComboBox()
        for key, title in EXCHANGES.items():
            self.venue.addItem(title, key)
        self.venue.insertSeparator(self.venue.count())
        for key, title in SINGLE.items():
            self.venue.addItem(title, key)
        self.venue.currentIndexChanged.connect(lambda _i: asyncio.ensure_future(self._show_stored()))
        self.stored = QLabel("")
        self.api_key = QLineEdit()
        self.api_key.setPlaceholderText("API key")
        self.key_error = _error_label()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText("Secret (shown as dots)")
        self.secret_error = _error_label()
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.save_button = QPushButton("Save keys")
        self.save_button.clicked.connect(lambda: asyncio.ensure_future(self.save()))
        self.remove_button = QPushButton("Remove keys")
        self.remove_button.clicked.connect(lambda: asyncio.ensure_future(self.remove()))
        self.message = QLabel("")
        self.message.setWordWrap(True)
        form = QFormLayout(self.form)
        form.addRow("For", self.venue)
        form.addRow("Stored", self.stored)
        self.key_row = QLabel("API key")
        form.addRow(self.key_row, self.api_key)
        form.addRow("", self.key_error)
        self.secret_row = QLabel("Secret")
        form.addRow(self.secret_row, self.secret)
        form.addRow("", self.secret_error)
        self.passphrase_row = QLabel("Passphrase")
        form.addRow(self.passphrase_row, self.passphrase)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        form.addRow(self.message)
        self.form.setEnabled(False)

        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status_label)
        layout.addWidget(self.choice)
        layout.addWidget(self.form)
        layout.addWidget(close)
        self._update_passphrase()
        self.ready = asyncio.ensure_future(self._start())

    # -- where keys go ------------------------------------------------------------------

    async def _start(self) -> None:
        if self.runtime.secrets is not None:
            self.status_label.setText(self._store_text(self.runtime.secrets.kind))
            await self._enable_form()
            return
        status = await asyncio.to_thread(self._status_fn)
        self.status_label.setText(status.explanation)
        if status.secure:
            try:
                self.runtime.secrets = await open_secret_store(self.runtime.paths.data_dir, StoreKind.KEYRING)
            except SecretStoreError as exc:
                self.status_label.setText(str(exc))
                self.choice.show()
                return
            await self._enable_form()
        else:
            if vault_exists(self.runtime.paths.data_dir):
                self.vault_radio.setChecked(True)
                self.use_button.setText("Unlock")
            self.choice.show()
            self.adjustSize()  # make room for the choice instead of squeezing the form

    @staticmethod
    def _store_text(kind: str) -> str:
        return {
            StoreKind.KEYRING: "API keys are kept in the operating system's keyring.",
            StoreKind.SESSION: "API keys are kept for this session only and forgotten when the terminal closes.",
            StoreKind.VAULT: "API keys are kept in the encrypted key file.",
        }.get(kind, "")

    async def _choose(self) -> None:
        self.password_error.hide()
        data_dir = self.runtime.paths.data_dir
        try:
            if self.vault_radio.isChecked():
                self.runtime.secrets = await open_secret_store(data_dir, StoreKind.VAULT, password=self.password.text())
            else:
                self.runtime.secrets = await open_secret_store(data_dir, StoreKind.SESSION)
        except SecretStoreError as exc:
            self.password_error.setText(str(exc))  # next to the password field; the password is kept
            self.password_error.show()
            return
        self.choice.hide()
        self.status_label.setText(self._store_text(self.runtime.secrets.kind))
        await self._enable_form()
        self.adjustSize()

    async def _enable_form(self) -> None:
        self.form.setEnabled(True)
        await self._show_stored()

    # -- the keys -------------------------------------------------------------------------

    @property
    def single(self) -> bool:
        """The chosen entry is one value (a provider key, a password), not a key and a secret."""
        return self.venue.currentData() in SINGLE

    def _update_passphrase(self) -> None:
        needed = self.venue.currentData() in NEEDS_PASSPHRASE
        self.passphrase.setVisible(needed)
        self.passphrase_row.setVisible(needed)
        single = self.single
        self.secret.setVisible(not single)
        self.secret_row.setVisible(not single)
        self.secret_error.hide()
        self.key_row.setText("Value" if single else "API key")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password if single else QLineEdit.EchoMode.Normal)
        self.api_key.setPlaceholderText(SINGLE.get(self.venue.currentData(), "API key") + (" (shown as dots)" if single else ""))
        self.save_button.setText("Save" if single else "Save keys")
        self.remove_button.setText("Remove" if single else "Remove keys")

    async def _show_stored(self) -> None:
        self._update_passphrase()
        store = self.runtime.secrets
        if store is None:
            return
        name = self.venue.currentData()
        if self.single:
            value = await get_token(store, name)
            # A provider key may show its ends (to tell keys apart); a password or webhook URL never does.
            shown = mask(value, secret=not name.startswith("marketdata_")) if value else ""
            self.stored.setText(f"{shown} (set)" if value else "not set")
            self.remove_button.setEnabled(value is not None)
            return
        creds = await store.get(name)
        self.stored.setText(f"key {mask(creds.api_key)}, secret ••••" if creds else "no keys stored")
        self.remove_button.setEnabled(creds is not None)

    def _check(self) -> bool:
        ok = True
        pairs = [(self.api_key, self.key_error, "value" if self.single else "API key")]
        if not self.single:
            pairs.append((self.secret, self.secret_error, "secret"))
        for field, label, what in pairs:
            text = field.text().strip()
            problem = ""
            if not text:
                problem = f"Enter the {what} exactly as the exchange showed it."
            elif any(ch.isspace() for ch in text):
                problem = f"The {what} has a space or line break inside it: copy it again without them."
            label.setText(problem)
            label.setVisible(bool(problem))
            ok = ok and not problem
        return ok

    async def save(self) -> None:
        store = self.runtime.secrets
        if store is None or not self._check():
            return
        venue = self.venue.currentData()
        try:
            if self.single:
                await set_token(store, venue, self.api_key.text().strip())
            else:
                await store.set(venue, ApiCredentials(self.api_key.text(), self.secret.text(), self.passphrase.text()))
        except SecretStoreError as exc:
            self.message.setText(str(exc))  # what was typed stays in the fields
            return
        for field in (self.api_key, self.secret, self.passphrase):
            field.clear()
        if self.single:
            self.message.setText(f"{SINGLE[venue]} saved. It is used from the next start of the terminal.")
        else:
            self.message.setText(f"Keys for {EXCHANGES[venue]} saved. They are used the next time {EXCHANGES[venue]} connects.")
        await self._show_stored()

    async def remove(self) -> None:
        store = self.runtime.secrets
        if store is None:
            return
        venue = self.venue.currentData()
        try:
            await store.delete(venue)
        except SecretStoreError as exc:
            self.message.setText(str(exc))
            return
        self.message.setText(f"{SINGLE[venue]} removed." if venue in SINGLE else f"Keys for {EXCHANGES[venue]} removed.")
        await self._show_stored()
