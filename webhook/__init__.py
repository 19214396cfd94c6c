"""chaos-registry-webhook: every chaos-experiment pod pulls its images from its organisation's registry.

`webhook.core` is the pure engine (parsing, resolution, mutation), `webhook.cli` the offline
command line, `webhook.service` the kopf operator and admission server that wrap the core.
"""

__version__ = "0.1.0"
