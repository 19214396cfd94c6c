"""`chaos-registry serve`: the kopf operator that wires watches, the admission server and the write side.

Start-up order: health endpoint, certificate, the lean watches of ChaosImageRegistry resources and
namespaces (kube/watch.py) until their first listing is complete, the defaults
ConfigMap and source Secrets (so the first snapshot is complete before /readyz turns green), then
kopf: it watches the defaults ConfigMap and the source Secrets and runs the admission server.
Replicas run standalone (kopf peering would pause the non-leading ones); the write side is
leader-elected separately with a Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import kopf
from kubernetes import client

from webhook.registrycheck.monitor import ImageMonitor
from webhook.service.admission.handler import AdmissionHandler
from webhook.service.admission.kopf_engine import register_mutation
from webhook.service.admission.server import AdmissionServer
from webhook.service.health import HealthServer
from webhook.service.kube import client as kube_client
from webhook.service.kube.errors import describe, status_of
from webhook.service.kube.lease import LeaseElector
from webhook.service.kube.resources import Resources, core_path
from webhook.service.kube.session import ApiSession
from webhook.service.kube.watch import LIST_PAGE_SIZE, NAMESPACES, REGISTRIES, WATCH_GRACE_SECONDS, Watcher
from webhook.service.memory import release_freed_memory
from webhook.service.options import ServeOptions
from webhook.service.state import ConfigState
from webhook.service.tls import webhook_configuration
from webhook.service.tls.certificates import (
    CertificateError,
    FileCertificates,
    SecretCertificates,
    ServingContext,
)
from webhook.service.tls.webhook_configuration import HANDLER_ID
from webhook.service.writer import Writer

logger = logging.getLogger("webhook.operator")

STARTUP_RETRY_SECONDS = 2.0


class Runtime:
    """Everything one serve process holds; handlers close over it."""

    def __init__(self, options: ServeOptions, api: client.ApiClient) -> None:
        self.options = options
        self.api = api
        self.state = ConfigState()
        self.serving = ServingContext()
        self.handler = AdmissionHandler(
            self.state.current, options.failure_policy, self.state.wait_for_namespace
        )
        self.server = AdmissionServer(
            self.handler,
            self.serving,
            address=options.address,
            port=options.port,
            engine=options.engine,
            url=options.webhook_url,
        )
        self.health = HealthServer(self.readiness, options.health_address, options.health_port)
        self.certificates: FileCertificates | SecretCertificates
        if options.tls_mode == "files":
            assert options.tls_cert_file and options.tls_key_file
            self.certificates = FileCertificates(
                self.serving,
                Path(options.tls_cert_file),
                Path(options.tls_key_file),
                Path(options.tls_ca_file) if options.tls_ca_file else None,
            )
        else:
            self.certificates = SecretCertificates(
                self.serving,
                api,
                options.namespace,
                options.tls_secret,
                options.service_hosts(),
                cert_validity=dt.timedelta(days=options.cert_validity_days),
                ca_validity=dt.timedelta(days=options.ca_validity_days),
                interval=options.cert_check_interval,
            )
        self.elector = LeaseElector(
            api, options.namespace, options.lease_name, options.identity, options.lease_duration
        )
        self.writer = Writer(self.state, api, options)
        self.image_monitor = ImageMonitor(self.state, api, options) if options.check_images else None
        self.watch_session = ApiSession(api.configuration)
        idle = options.watch_idle_timeout
        self.watchers = (
            Watcher(
                self.watch_session,
                REGISTRIES,
                self.state.upsert_registry,
                self.state.delete_registry,
                self.state.objects.keys,
                idle,
            ),
            Watcher(
                self.watch_session,
                NAMESPACES,
                self._upsert_namespace,
                self.state.delete_namespace,
                self.state.namespace_names,
                idle,
            ),
        )
        self.tasks: list[asyncio.Task[None]] = []

    def _upsert_namespace(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        labels = metadata.get("labels")
        self.state.upsert_namespace(metadata["name"], labels if isinstance(labels, dict) else None)

    def readiness(self) -> tuple[bool, str]:
        if self.state.snapshot is None:
            failing = [f"{w.resource.kind}: {w.last_error}" for w in self.watchers if w.last_error]
            return False, "caches not synced" + (f" ({'; '.join(failing)})" if failing else "")
        if not self.serving.loaded:
            return False, "certificate not loaded"
        if not self.server.started.is_set():
            return False, "admission server not started"
        # Still ready (admissions are answered from the caches, as during an apiserver restart), but
        # a watch failing now or a stall it recovered from are said, for whoever looks.
        notes = [f"{w.resource.kind} {w.last_error}" for w in self.watchers if w.last_error]
        notes += [f"{w.resource.kind} watch {w.last_recovery}" for w in self.watchers if w.last_recovery]
        return True, "ready" + (f" ({'; '.join(notes)})" if notes else "")

    # Start-up -------------------------------------------------------------------------------------

    async def load_certificate(self) -> None:
        if isinstance(self.certificates, FileCertificates):
            self.certificates.load()
        else:
            await self.certificates.load()

    async def wait_for_watches(self) -> None:
        """Until every lean watch has delivered its first complete listing (each retries on its own)."""
        for watcher in self.watchers:
            await watcher.synced.wait()

    def read_defaults_and_secrets(self) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """The defaults ConfigMap (None: there is none) and the source Secrets' names (blocking:
        runs in a thread; the state is changed on the event loop only)."""
        resources = Resources(self.api)
        try:
            path = core_path("configmaps", self.options.namespace, self.options.defaults_configmap)
            configmap = resources.get(path, "V1ConfigMap")
            defaults_body: dict[str, Any] | None = {"data": configmap.data or {}}
        except client.ApiException as error:
            if status_of(error) != 404:
                raise
            defaults_body = None
        secrets = [
            (source, secret.metadata.name)
            for source in self.options.source_namespaces
            for secret in resources.get(core_path("secrets", source), "V1SecretList").items
            if secret.metadata and secret.metadata.name
        ]
        return defaults_body, secrets

    def ensure_webhook_configuration(self, ca_bundle: bytes | None) -> None:
        options = self.options
        if options.webhook_url is not None:
            body = webhook_configuration.build_webhook_configuration(
                name=options.webhook_config_name,
                webhook_namespace=options.namespace,
                ca_bundle=ca_bundle,
                url=options.webhook_url,
                failure_policy=options.failure_policy,
                timeout_seconds=options.timeout_seconds,
                select_all_namespaces=options.select_all_namespaces,
            )
            webhook_configuration.apply_webhook_configuration(self.api, body)
        elif options.manage_ca_bundle and ca_bundle:
            webhook_configuration.sync_ca_bundle(self.api, options.webhook_config_name, ca_bundle)

    def ca_bundle_changed(self, ca_bundle: bytes | None) -> None:
        if ca_bundle and (self.options.manage_ca_bundle or self.options.webhook_url):
            task = asyncio.get_running_loop().create_task(self._sync_ca_bundle(ca_bundle))
            self.tasks.append(task)
            task.add_done_callback(self.tasks.remove)

    async def _sync_ca_bundle(self, ca_bundle: bytes) -> None:
        try:
            await asyncio.to_thread(
                webhook_configuration.sync_ca_bundle, self.api, self.options.webhook_config_name, ca_bundle
            )
        except Exception:
            logger.exception("cannot update the caBundle of %s", self.options.webhook_config_name)

    async def _start_until_ready(self) -> None:
        while True:
            try:
                await self.load_certificate()
                # Read while the listings stream: at 100,000 objects they take seconds, this a few
                # requests, and the first snapshot needs both.
                reading = asyncio.ensure_future(asyncio.to_thread(self.read_defaults_and_secrets))
                try:
                    await self.wait_for_watches()
                except asyncio.CancelledError:
                    reading.cancel()
                    raise
                defaults_body, secrets = await reading
                self.state.set_defaults(defaults_body)
                for source, name in secrets:
                    self.state.set_source_secret(source, name, True)
                self.state.rebuild()
                await asyncio.to_thread(self.ensure_webhook_configuration, self.certificates.ca_bundle())
                return
            except CertificateError:
                raise
            except client.ApiException as error:
                logger.error(
                    "start-up: API request failed (%s); retrying in %ss",
                    describe(error),
                    STARTUP_RETRY_SECONDS,
                )
            except OSError as error:
                logger.error(
                    "start-up: cannot reach the API server (%s); retrying in %ss",
                    error,
                    STARTUP_RETRY_SECONDS,
                )
            gc.enable()  # a first attempt failed: no telling how long the next ones take
            await asyncio.sleep(STARTUP_RETRY_SECONDS)

    async def start(self) -> None:
        """Everything before kopf: retried until the API answers, with the reason logged."""
        await self.health.start()
        self.tasks.extend(asyncio.create_task(watcher.run()) for watcher in self.watchers)
        # The first listing creates most of what the process keeps (at 100,000 registries and
        # namespaces about 700,000 tracked objects): the collections it would trigger walk them
        # again and again (1.3 of 13 CPU s there), and what it drops is not cyclic. Afterwards they
        # are frozen rather than collected: no collection walks them again (one would have cost
        # 0.17 s before /readyz, and more in every full collection later); what of them is
        # replaced is still freed by its reference count.
        gc.disable()
        try:
            await self._start_until_ready()
        finally:
            gc.freeze()
            gc.enable()
        release_freed_memory()
        self.tasks.append(asyncio.create_task(self.certificates.run(self.ca_bundle_changed)))
        if self.options.writer:
            self.tasks.append(asyncio.create_task(self.elector.run(self._lead)))

    async def _lead(self) -> None:
        """While this replica holds the Lease: the writer, and the registry check when enabled."""
        if self.image_monitor is None:
            await self.writer.run()
            return
        await asyncio.gather(self.writer.run(), self.image_monitor.run())

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.watch_session.close()
        await self.health.stop()


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """kopf handlers: the defaults ConfigMap and source Secrets feed the state; with the kopf engine,
    the mutating handler. Namespaces and registries are watched by the lean watchers instead."""
    registry = kopf.OperatorRegistry()
    state = runtime.state
    options = runtime.options

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # Read afresh on every (re-)login: in-cluster tokens are rotated.
        configuration = kube_client.load_client_configuration(options.kubeconfig)
        info: kopf.ConnectionInfo = kube_client.connection_info(configuration)
        return info

    def is_defaults(*, name: str, namespace: str | None, **_: Any) -> bool:
        return name == options.defaults_configmap and namespace == options.namespace

    @kopf.on.event("", "v1", "configmaps", when=is_defaults, registry=registry)
    async def defaults_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        state.set_defaults(None if type == "DELETED" else body)

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def secret_event(type: str | None, name: str, namespace: str | None, **_: Any) -> None:
        # Only names are kept: Secret contents never leave the API except into the copies.
        if namespace is not None and namespace in options.source_namespaces:
            # type None: kopf's (re-)listing, which may carry a change its watch missed.
            state.set_source_secret(namespace, name, type != "DELETED", modified=type in (None, "MODIFIED"))

    # Registered whatever the engine (kopf resolves the resources of its handlers before serving);
    # with the direct engine, the server answers this handler's path itself.
    register_mutation(registry, runtime.handler, HANDLER_ID)
    return registry


def configure_logging(options: ServeOptions) -> None:
    log_format = kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.PLAIN
    kopf.configure(debug=options.log_level == "debug", log_format=log_format)
    level = getattr(logging, options.log_level.upper())
    logging.getLogger().setLevel(level)
    # kopf's per-object INFO lines (one per watched event) would drown the admissions.
    logging.getLogger("kopf").setLevel(max(level, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(options: ServeOptions) -> None:
    configure_logging(options)
    configuration = kube_client.load_client_configuration(options.kubeconfig)
    api = kube_client.api_client(configuration)
    runtime = Runtime(options, api)
    settings = kopf.OperatorSettings()
    settings.admission.server = runtime.server  # type: ignore[assignment]
    settings.peering.standalone = True
    # kopf would otherwise list and watch every namespace (a queue and a worker each) to learn which
    # match its namespace patterns; ours are exact names, and namespaces are watched leanly above.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    # Paged listings: at 10,000 objects one unpaged list is tens of MiB of JSON decoded at once.
    settings.watching.chunk_size = LIST_PAGE_SIZE
    # kopf's own watches (defaults ConfigMap, source Secrets) read without an idle timeout: a
    # silently dropped connection would hold them until TCP gives up. Have the apiserver end them
    # within the idle timeout and give up on a connection a grace period past that.
    settings.watching.server_timeout = max(1, int(options.watch_idle_timeout))  # whole seconds
    settings.watching.client_timeout = options.watch_idle_timeout + WATCH_GRACE_SECONDS
    try:
        await runtime.start()
        await kopf.operator(
            registry=build_registry(runtime),
            settings=settings,
            standalone=True,
            clusterwide=False,
            namespaces=list(options.source_namespaces),
            liveness_endpoint=None,
            # Without it kopf asks getpass.getuser(), which fails for a user with no passwd entry:
            # the image runs as 65532, which the base image does not list. (kopf types it as its
            # Identity, a NewType of str that it does not export.)
            identity=cast(Any, options.identity),
        )
    finally:
        await runtime.stop()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (a dependency on Linux and macOS): its TLS and I/O paths cost
    about a tenth less CPU per admission request than asyncio's (bench/RESULTS.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(options: ServeOptions) -> int:
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(options))
    except CertificateError as error:
        logger.error("%s", error)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
