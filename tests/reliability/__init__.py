"""Reliability and security tests against the real kube-apiserver (issue 7; see RELIABILITY.md)."""
