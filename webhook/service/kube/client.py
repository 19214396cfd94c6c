"""Credentials and the Kubernetes API client of the service (the official `kubernetes` package).

kopf watches with its own client; everything the service writes (status, Secret copies, Events,
the Lease, the webhook configuration, the certificate Secret) goes through this one, by way of
`resources.py` (not the generated API classes), called from worker threads so the event loop, and
so admission, never waits on it.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client, config


def load_client_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """In-cluster configuration when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    client.Configuration.set_default(configuration)
    return configuration


def api_client(configuration: client.Configuration | None = None) -> client.ApiClient:
    return client.ApiClient(configuration or client.Configuration.get_default_copy())


def connection_info(configuration: client.Configuration) -> Any:
    """The same credentials as kopf's ConnectionInfo, so kopf's watches and our writes act alike."""
    import kopf

    header = authorization(configuration)
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def authorization(configuration: client.Configuration) -> str | None:
    """The Authorization header of the configuration's token ("Bearer ..."), refreshed first when
    the configuration can refresh it (in a pod, the token file is rotated)."""
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        hook(configuration)
    header: str | None = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    return header or None
