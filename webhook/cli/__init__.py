"""The `chaos-registry` command line."""
