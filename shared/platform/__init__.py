"""What every function stands on: settings, observability, the HTTP edge (errors to HTTP in one
place), JWT claims, Postgres with row-level security, KMS envelope crypto, AWS clients, deadlines,
EventBridge events and the migrator.

May import: no other package of shared/ (it knows no domain: Meta's failures reach the HTTP
edge as `UpstreamError`).
"""
