"""WhatsApp Business: the accounts and numbers a token can use, the tenant's sender, its message
templates, and Meta's signed webhooks (delivery statuses, template updates, opt-outs).

May import: `platform`, `meta`, `connection`.
"""
