"""Lead Ads: a tenant's Facebook Pages and their Page tokens, Meta's leadgen notifications, the
read of each lead into one `leads` row, its failures and the reconciliation that finds leads no
notification announced.

May import: `platform`, `meta`, `connection`.
"""
