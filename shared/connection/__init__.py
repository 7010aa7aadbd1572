"""A tenant's Meta connection: the OAuth state and dialog, the connect flow, the encrypted user
token (credentials), the per-tenant Graph session built from it, and keeping it alive (token
refresh, health, status).

May import: `platform`, `meta`.
"""
