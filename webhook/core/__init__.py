"""Pure core of the webhook: no kopf, no Kubernetes client, no I/O."""
