"""Settings → Notifications: how each channel is set up, and a test send for email.

The channels' settings live in the settings file (`[notify.*]`), their passwords and tokens
in the keyring (Settings → API keys): this dialog shows both, says what is missing, and sends
a test email right away (not through the outbox), with the outcome as a sentence next to the
button. It never blocks the window: the send is awaited in a task.
"""

from __future__ import annotations

import asyncio
from typing import Any

import shiboken6
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from ui import theme


class NotificationsDialog(QDialog):
    def __init__(self, runtime: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.setWindowTitle("Notifications")
        self.setMinimumWidth(560)
        n = runtime.settings.notify
        missing = runtime.channels_ready()
        layout = QVBoxLayout(self)
        intro = QLabel(f"These come from your settings file ({runtime.paths.config_file}); passwords and tokens "
                       "are entered in Settings → API keys.")
        intro.setWordWrap(True)
        intro.setStyleSheet(f"color: {theme.MUTED};")
        layout.addWidget(intro)

        email = QGroupBox("Email")
        form = QFormLayout(email)
        form.addRow("Server", QLabel(f"{n.email.host}:{n.email.port} ({n.email.security})" if n.email.host else "not set"))
        form.addRow("Login", QLabel(n.email.username or "none"))
        form.addRow("From", QLabel(n.email.sender or "not set"))
        form.addRow("To", QLabel(", ".join(n.email.recipients) or "nobody"))
        self.email_state = QLabel(missing.get("email", "Ready."))
        self.email_state.setWordWrap(True)
        form.addRow("", self.email_state)
        self.test_button = QPushButton("Send test email")
        self.test_button.setEnabled("email" not in missing)
        self.test_button.clicked.connect(self.send_test)
        self.test_result = QLabel("")
        self.test_result.setWordWrap(True)
        form.addRow(self.test_button, self.test_result)
        layout.addWidget(email)

        others = QGroupBox("Other channels")
        other_form = QFormLayout(others)
        for name, title in (("desktop", "Desktop"), ("discord", "Discord"), ("sms", "SMS")):
            label = QLabel(missing.get(name, "Ready."))
            label.setWordWrap(True)
            other_form.addRow(title, label)
        layout.addWidget(others)

        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.task: asyncio.Task[None] | None = None

    def send_test(self) -> None:
        if self.task is not None and not self.task.done():
            return
        self.test_button.setEnabled(False)
        self.test_result.setStyleSheet("")
        self.test_result.setText("Sending…")
        self.task = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        from app.notify import send_test_email

        try:
            sentence = await send_test_email(self.runtime.settings.notify.email, self.runtime.secret)
            ok = sentence.startswith("A test email was sent")
        except Exception as exc:  # a sentence, never a traceback
            sentence, ok = f"The test email could not be sent: {exc}", False
        if not shiboken6.isValid(self.test_result):
            return
        self.test_result.setText(sentence)
        self.test_result.setStyleSheet(f"color: {theme.UP if ok else theme.DOWN};")
        self.test_button.setEnabled(True)
