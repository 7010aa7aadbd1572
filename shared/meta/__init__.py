"""Meta's Graph API as a client: the sync and async Graph clients (appsecret_proof, paging,
batches, retries, deadlines) and Meta's errors and usage headers, classified.

May import: `platform`.
"""
