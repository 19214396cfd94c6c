"""Admission: decode a review (review.py), decide from the snapshot (decision.py), answer it over
HTTPS (server.py), with the kopf engine as a second transport over the same decision (kopf_engine.py).
"""
