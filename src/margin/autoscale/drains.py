"""Drains shared by every replica and kept across restarts (docs/deploy.md, "Spot drain").

A drain is an object of kind `drain` in the object store teams and budgets use (`margin_objects`,
the keys' database): id `<deployment>` for a whole deployment, `<deployment>@<host:port>` for one
replica of it. Every drain, undrain and termination notice writes one audit row
(`margin_object_changes`, `GET /admin/audit?kind=drain`) in the same transaction, with its actor.

Each replica reads the drains every `every_s` (`limits.key_cache_s`, the interval teams and budgets
refresh on) and reconciles: its balancers' replicas and its standby's drained deployments follow
the store. The replica that took the call applies it at once. A store that cannot be read leaves
the last drains in force (logged), never "nothing drained".

A drain with `not_after` (a termination notice's: when the node goes) expires then: from the first
refresh after it, no replica applies it (the deployment or replica is served again), and the first
replica to see it deletes it with a `delete` audit row by `auto:not_after`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from margin.autoscale.standby import Standby
from margin.periodic import Periodic
from margin.storage.protocols import StorageError
from margin.storage.teams import Change, DuplicateObject, ObjectStore, StoredObject

log = logging.getLogger("margin.audit")

Key = tuple[str, str | None]  # (deployment, host:port or None for the whole deployment)
EXPIRY_ACTOR = "auto:not_after"  # the audit actor of a drain removed because its not_after passed


class _Endpoint(Protocol):
    base: str
    drained: bool


class Drainable(Protocol):
    """A deployment's balancer (margin.providers.balance.Balancer), as far as drains need it."""

    @property
    def endpoints(self) -> Sequence[_Endpoint]: ...


def host_of(base: str) -> str:
    return urlsplit(base).netloc.rpartition("@")[2]


def drain_id(deployment: str, endpoint: str | None) -> str:
    return deployment if endpoint is None else f"{deployment}@{endpoint}"


def is_expired(body: Mapping[str, Any], now: float) -> bool:
    """Whether a drain's `not_after` (epoch seconds, from a termination notice) has passed."""
    not_after = body.get("not_after")
    return isinstance(not_after, int | float) and not isinstance(not_after, bool) and not_after <= now


class DrainSync:
    def __init__(
        self,
        store: ObjectStore,
        standby: Standby,
        balancer_of: Callable[[str], Drainable | None],
        *,
        every_s: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.standby = standby
        self.balancer_of = balancer_of
        self.every_s = every_s
        self.wall = wall
        self.drains: dict[Key, Mapping[str, Any]] = {}
        self.refreshed_at: float | None = None
        # Broad on purpose: a bug in a refresh must not end the refreshes for good (logged with its
        # traceback); a store that cannot be read is only a warning.
        self._loop = Periodic("margin-drains", self.refresh, every_s, handled=(Exception,), on_error=_refresh_failed)
        self._lock = asyncio.Lock()

    # --- writes (the admin calls and the termination notice) -------------------------------------

    async def drain(
        self,
        deployment: str,
        endpoint: str | None,
        *,
        reason: str,
        by: str,
        not_after: float | None,
        via: str = "admin",
    ) -> None:
        """Store the drain with its audit row (a second notice for the same target updates it);
        `via`: "admin" (the drain call) or "termination-notice"."""
        now = self.wall()
        oid = drain_id(deployment, endpoint)
        body = {"deployment": deployment, "endpoint": endpoint, "reason": reason, "by": by, "via": via, "at": now,
                "not_after": not_after}  # fmt: skip
        for _ in range(3):  # a concurrent write on another replica: read again
            old = await self.store.get("drain", oid)
            if old is None:
                obj = StoredObject("drain", oid, oid, body, now, now)
                with contextlib.suppress(DuplicateObject):
                    await self.store.create(obj, Change(now, by, "drain", oid, "create", None, body))
                    break
                continue
            new = StoredObject("drain", oid, oid, body, old.created_at, now, old.version + 1)
            if await self.store.update(new, old.version, Change(now, by, "drain", oid, "update", old.body, body)):
                break
        await self.refresh()

    async def undrain(self, deployment: str, endpoint: str | None, *, by: str) -> None:
        """Remove the drain of one replica (and the deployment's own, which it implies), or of the
        deployment and every replica of it; an undrain of nothing still leaves its audit row."""
        now = self.wall()
        stored = await self.store.objects("drain")
        gone = [
            o for o in stored
            if o.body.get("deployment") == deployment
            and (endpoint is None or o.body.get("endpoint") in (None, endpoint))
        ]  # fmt: skip
        for obj in gone:
            await self.store.delete("drain", obj.object_id, Change(now, by, "drain", obj.object_id, "delete",
                                                                   obj.body, None))  # fmt: skip
        if not gone:
            oid = drain_id(deployment, endpoint)
            await self.store.record(Change(now, by, "drain", oid, "delete", None, None))
        await self.refresh()

    # --- reads and reconciling -------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the drains and apply the ones in force; a drain whose `not_after` has passed is not
        applied, and is deleted from the store with its audit row (actor `EXPIRY_ACTOR`)."""
        async with self._lock:
            stored = await self.store.objects("drain")
            now = self.refreshed_at = self.wall()
            live = [o for o in stored if not is_expired(o.body, now)]
            self.apply({(str(o.body["deployment"]), o.body.get("endpoint")): o.body for o in live})
            for obj in stored:
                if is_expired(obj.body, now):
                    await self._expire(obj, now)

    async def _expire(self, obj: StoredObject, now: float) -> None:
        """Delete an expired drain, only at the version read: a notice that renewed it meanwhile
        stays (this or another replica's next refresh sees it). Every replica ignores an expired
        drain whether or not it is deleted yet; the first to delete it writes the one audit row."""
        change = Change(now, EXPIRY_ACTOR, "drain", obj.object_id, "delete", obj.body, None)
        try:
            deleted = await self.store.delete("drain", obj.object_id, change, expected_version=obj.version)
        except StorageError as exc:  # ignored here all the same; the next refresh tries again
            log.warning("removing the expired drain %s failed: %s", obj.object_id, exc)
            return
        if deleted:
            log.warning("drain expired deployment=%s endpoint=%s not_after=%s by=%s", obj.body.get("deployment"),
                        obj.body.get("endpoint"), obj.body.get("not_after"), EXPIRY_ACTOR)  # fmt: skip

    def apply(self, drains: Mapping[Key, Mapping[str, Any]]) -> None:
        """Make this replica's balancers and standby match `drains` (deployments it does not
        serve are ignored: another config's)."""
        self.drains = dict(drains)
        for name in self.standby.known():
            whole = drains.get((name, None))
            balancer = self.balancer_of(name)
            replicas = False
            if balancer is not None:
                for e in balancer.endpoints:
                    e.drained = (name, host_of(e.base)) in drains
                replicas = bool(balancer.endpoints) and all(e.drained for e in balancer.endpoints)
            if whole is None and replicas:
                whole = next(b for (d, ep), b in drains.items() if d == name and ep is not None)
            if whole is None:
                self.standby.undrain(name)
            else:
                self.standby.drain(name, reason=str(whole.get("reason")), by=str(whole.get("by")),
                                   not_after=whole.get("not_after"), at=whole.get("at"))  # fmt: skip

    # --- lifecycle (a Standby service) ------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.refresh()
        except StorageError as exc:
            log.warning("reading the drains failed (retried every %.1f s): %s", self.every_s, exc)
        self._loop.start()

    async def stop(self, drain_s: float = 0.0) -> None:
        await self._loop.stop()


def _refresh_failed(exc: Exception) -> None:
    if isinstance(exc, StorageError):  # the last drains stay in force
        log.warning("refreshing the drains failed: %s", exc)
    else:
        log.exception("refreshing the drains failed", exc_info=exc)
