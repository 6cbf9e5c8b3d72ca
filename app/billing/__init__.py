"""Billing: the Pro plan and points, through a relay service that alone holds Stripe's secret key.

Two parts share this package (docs/billing.md has the whole story):

* the relay (`python main.py relay`): relay.py (HTTP + websocket), service.py,
  stripe_gateway.py, processor.py (Stripe events), reconciler.py, hub.py,
  and its storage (repository.py, sqlite_repo.py, migrations.py, db.py);
* the desktop side: client.py (talks to the relay, publishes payment events on
  the bus), models.py (what the desktop sees), token_store.py (the account
  token in the keyring).

Shared by both: catalog.py (plans, packs, prices), ledger.py (points),
flow.py (a payment's state machine), accounts.py, errors.py.
Nothing here imports Qt.
"""
