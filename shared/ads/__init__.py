"""Ads: the ad accounts a token can use and the one the tenant connects, campaign and insight
sync, and the stats and ROI answers, with their stores.

May import: `platform`, `meta`, `connection`.
"""
