"""Automated template messages (HSM): rules, lead eligibility, the claim ledger that makes each
send happen at most once, pacing at the sender's cap, send outcomes, the dispatcher, and the
logs of what was sent.

May import: `platform`, `meta`, `connection`, `whatsapp`.
"""
