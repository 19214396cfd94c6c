"""The webhook service: a kopf operator that keeps the configuration snapshot fresh from watches,
serves admission over HTTPS, manages certificates, and (one replica, by Lease) writes status and
pull-secret copies. It wraps the pure core in `webhook.core`.
"""
