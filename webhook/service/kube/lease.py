"""Leader election with a coordination.k8s.io/v1 Lease: only the holder runs the write side.

Every replica serves admissions; exactly one also writes status, Secret copies and Events, so
replicas never fight over what they write. The holder renews the Lease every duration/3; others
try as often and take it over once `renewTime + leaseDurationSeconds` has passed (the holder's own
duration, as written in the Lease). Every write carries the resourceVersion read just before, so
when two replicas race the API server accepts one and answers the other 409 Conflict.

A leader that cannot renew for 2/3 of the duration stops its work before the others may take
over, so two writers never overlap while clocks agree. On shutdown the holder clears
holderIdentity, so another replica takes over at its next try instead of after the duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from kubernetes import client

from webhook.service import metrics
from webhook.service.kube.errors import describe, status_of
from webhook.service.kube.resources import Resources, group_path

logger = logging.getLogger("webhook.leader")

# Pause before restarting work that failed; it is the write side, which should never end itself.
WORK_RESTART_SECONDS = 1.0
RELEASE_TIMEOUT_SECONDS = 5.0
LEASES = "coordination.k8s.io/v1"  # the API group and version of Lease


def lease_time(moment: datetime) -> datetime:
    """A MicroTime the client can send.

    The client serialises datetimes with isoformat(), which drops a zero fraction; MicroTime needs
    the six digits, so a zero microsecond becomes one (a microsecond changes nothing here).
    """
    return moment if moment.microsecond else moment.replace(microsecond=1)


class LeaseElector:
    """Holds the Lease `namespace/name` as `identity` and runs `work` only while holding it."""

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, identity: str, duration: float = 15.0
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_interval = duration / 3
        self.retry_interval = duration / 3
        # Stop working before anyone else may take the Lease (renewTime + duration).
        self.renew_deadline = duration * 2 / 3
        self.request_timeout = max(1.0, duration / 3)
        self.is_leader = False
        self._observed_holder: str | None = None
        self._resources = Resources(api, timeout=self.request_timeout)
        self._path = group_path(LEASES, "leases", namespace, name)

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    # The loop --------------------------------------------------------------------------------------

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        """Campaign forever; lead (running `work`) whenever the Lease is ours. Cancel to stop."""
        logger.info("campaigning for Lease %s as %s", self.lease, self.identity)
        try:
            while True:
                started = time.monotonic()
                if await self._attempt("acquire"):
                    await self._lead(work, started)
                else:
                    await asyncio.sleep(self.retry_interval)
        finally:
            self._set_leader(False)
            await self._release_on_exit()

    async def _attempt(self, what: str) -> bool:
        try:
            return await asyncio.to_thread(self._try_acquire_or_renew)
        except Exception as error:  # the API is unreachable or refuses: try again later
            logger.warning("cannot %s Lease %s: %s", what, self.lease, describe(error))
            return False

    async def _lead(self, work: Callable[[], Awaitable[None]], acquired_at: float) -> None:
        """Run `work` while renewing; return (cancelling it) when the Lease is lost or cannot be
        renewed within the renew deadline, counted from the start of the last good renewal (the
        renewTime others see is taken then)."""
        logger.info(
            "acquired Lease %s as %s: this replica writes status and Secret copies", self.lease, self.identity
        )
        self._set_leader(True)
        task = asyncio.create_task(self._supervise(work), name="lease-work")
        last_renewal = acquired_at
        try:
            while True:
                await asyncio.sleep(self.renew_interval)
                while True:
                    remaining = last_renewal + self.renew_deadline - time.monotonic()
                    if remaining <= 0:
                        logger.warning(
                            "cannot renew Lease %s within %.1fs: stepping down",
                            self.lease,
                            self.renew_deadline,
                        )
                        return
                    started = time.monotonic()
                    try:
                        renewed = await asyncio.wait_for(
                            asyncio.to_thread(self._try_acquire_or_renew), remaining
                        )
                    except Exception as error:
                        logger.warning("cannot renew Lease %s: %s; retrying", self.lease, describe(error))
                        await asyncio.sleep(min(self.renew_interval / 2, max(0.0, remaining)))
                        continue
                    if not renewed:
                        logger.info("lost Lease %s to %s: stepping down", self.lease, self._observed_holder)
                        return
                    last_renewal = started
                    break
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._set_leader(False)

    async def _supervise(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` for as long as we lead; restart it if it ever ends or fails."""
        while True:
            try:
                await work()
                logger.warning("the write side returned while leading; restarting it")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the write side failed; restarting it in %ss", WORK_RESTART_SECONDS)
            await asyncio.sleep(WORK_RESTART_SECONDS)

    def _set_leader(self, leader: bool) -> None:
        self.is_leader = leader
        metrics.LEADER.set(1 if leader else 0)

    # Lease operations (blocking: run in a thread) ----------------------------------------------------

    def _spec(self, now: datetime, acquire_time: datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=max(1, math.ceil(self.duration)),
            acquire_time=lease_time(acquire_time),
            renew_time=lease_time(now),
            lease_transitions=transitions,
        )

    def _try_acquire_or_renew(self) -> bool:
        """True when we hold the Lease after this call (created, renewed or taken over)."""
        now = datetime.now(UTC)
        try:
            lease = self._resources.get(self._path, "V1Lease")
        except client.ApiException as error:
            if status_of(error) != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, now, 0),
            )
            try:
                self._resources.create(group_path(LEASES, "leases", self.namespace), body, "V1Lease")
            except client.ApiException as create_error:
                if status_of(create_error) == 409:
                    return False  # another replica created it first
                raise
            return True

        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        if holder and holder != self.identity and not self._expired(spec, now):
            if holder != self._observed_holder:
                logger.info("Lease %s is held by %s", self.lease, holder)
                self._observed_holder = holder
            return False
        transitions = spec.lease_transitions or 0
        if holder == self.identity:
            acquire_time = spec.acquire_time or now
        else:
            if holder:
                logger.info("Lease %s of %s has expired: taking it over", self.lease, holder)
            acquire_time = now
            transitions += 1
        try:
            self._resources.replace(
                self._path, self._body(lease, self._spec(now, acquire_time, transitions)), "V1Lease"
            )
        except client.ApiException as error:
            if status_of(error) == 409:
                return False
            raise
        self._observed_holder = self.identity
        return True

    def _body(self, current: client.V1Lease, spec: client.V1LeaseSpec) -> client.V1Lease:
        """The replacement of `current`: its resourceVersion (so a concurrent write makes this a 409
        Conflict) and labels and annotations kept; server-set metadata left to the server."""
        metadata = current.metadata or client.V1ObjectMeta()
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                resource_version=metadata.resource_version,
                labels=metadata.labels,
                annotations=metadata.annotations,
            ),
            spec=spec,
        )

    def _expired(self, spec: client.V1LeaseSpec, now: datetime) -> bool:
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=UTC)
        duration = spec.lease_duration_seconds or self.duration
        return renewed + timedelta(seconds=duration) < now

    def _release(self) -> bool:
        """Clear holderIdentity if we still hold the Lease; True when released."""
        lease = self._resources.get(self._path, "V1Lease")
        spec = lease.spec or client.V1LeaseSpec()
        if spec.holder_identity != self.identity:
            return False
        now = lease_time(datetime.now(UTC))
        released = client.V1LeaseSpec(
            lease_duration_seconds=1,
            acquire_time=now,
            renew_time=now,
            lease_transitions=spec.lease_transitions or 0,
        )
        try:
            self._resources.replace(self._path, self._body(lease, released), "V1Lease")
        except client.ApiException as error:
            if status_of(error) == 409:
                return False
            raise
        return True

    async def _release_on_exit(self) -> None:
        if self._observed_holder != self.identity:
            return
        try:
            released = await asyncio.wait_for(asyncio.to_thread(self._release), RELEASE_TIMEOUT_SECONDS)
        except Exception as error:
            logger.warning("cannot release Lease %s: %s", self.lease, describe(error))
            return
        if released:
            self._observed_holder = None
            logger.info("released Lease %s", self.lease)
