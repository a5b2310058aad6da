"""Multi-tenancy (ojs-multi-tenancy): which tenant a job belongs to and where it lives.

A job's tenant is ``meta.tenant_id`` (§5.1); a request may name the tenant it acts for
(the ``X-OJS-Tenant`` header, §5.3), which the HTTP layer puts in :func:`acting_tenant`
for the request (embedded callers use :func:`acting_as`). Isolation is by sharded
queues (§6.3): a tenant's jobs of queue ``q`` live in their own queue, :func:`shard_of` ``(q,
tenant)``, an ordinary queue on every backend, so fetches, counts, pause and the queue
registry need nothing new from a backend; the wire (``Job.to_wire``) shows the queue
asked for, events the tenant's queue. A worker acting for a tenant fetches from its
shards only; one acting for nobody (a shared worker) from the queue and every tenant's
shard of it (:class:`ShardDirectory`), by the tenants' weights
(:meth:`~.worker_side.WorkerSide.fetch`).

The shard's name is a valid OJS queue name, ``<queue>..t.<tenant>``, the tenant spelled
with lowercase letters, digits and ``-`` as they are and any other character as
``.<two hex digits>`` (so ``..t.`` never occurs in an encoded tenant and the split is
unambiguous).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..backends import Snapshots
from ..core import InvalidRequest, Job, NotFound
from ..core.job import TENANT_SHARD_MARK
from ..core.validation import MAX_QUEUE_LENGTH
from .clock import Clock

DEFAULT_TENANT = "_default"
"""The tenant of jobs that name none (ojs-multi-tenancy §15.3)."""
TENANT_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._:-]*$")
MAX_TENANT_LENGTH = 64
SHARD_MARK = TENANT_SHARD_MARK
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class _Acting:
    """A tenant acted for while ``live``: a task started meanwhile (an actor first used by
    the request) copies the context, and must not go on acting for the tenant after."""

    __slots__ = ("live", "tenant")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.live = True


_acting: ContextVar[_Acting | None] = ContextVar("ojs_acting_tenant", default=None)


def acting_tenant() -> str | None:
    """The tenant the current request acts for (``X-OJS-Tenant``), ``None`` for nobody."""
    acting = _acting.get()
    return acting.tenant if acting is not None and acting.live else None


@contextmanager
def acting_as(tenant: str | None) -> Iterator[None]:
    """Act for ``tenant`` in this block (what the header does for an HTTP request)."""
    acting = None if tenant is None else _Acting(parse_tenant(tenant, "tenant"))
    token = _acting.set(acting)
    try:
        yield
    finally:
        if acting is not None:
            acting.live = False
        _acting.reset(token)


def parse_tenant(value: object, field: str = "meta.tenant_id") -> str:
    """A tenant id as §5.2 spells it, or a 400 naming ``field``."""
    if value == DEFAULT_TENANT:
        return value
    if (
        not isinstance(value, str)
        or len(value) > MAX_TENANT_LENGTH
        or not TENANT_PATTERN.fullmatch(value)
    ):
        raise InvalidRequest(
            f"'{field}' must be a tenant id of at most {MAX_TENANT_LENGTH} characters: "
            "letters, digits, '.', '_', ':' and '-', starting with a letter or digit.",
            details={"field": field, "received": value},
        )
    return value


def _encode(tenant: str) -> str:
    return "".join(c if c in _PLAIN else f".{ord(c):02x}" for c in tenant)


def _decode(encoded: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(encoded):
        if encoded[index] == ".":
            out.append(chr(int(encoded[index + 1 : index + 3], 16)))
            index += 3
        else:
            out.append(encoded[index])
            index += 1
    return "".join(out)


def shard_of(queue: str, tenant: str | None) -> str:
    """The queue holding ``tenant``'s jobs of ``queue`` (``queue`` itself for nobody)."""
    if tenant is None or tenant == DEFAULT_TENANT or SHARD_MARK in queue:
        return queue
    shard = f"{queue}{SHARD_MARK}{_encode(tenant)}"
    if len(shard) > MAX_QUEUE_LENGTH:
        raise InvalidRequest(
            f"Queue '{queue}' with tenant '{tenant}' makes a name longer than "
            f"{MAX_QUEUE_LENGTH} characters; use a shorter queue or tenant id.",
            details={"field": "queue", "tenant_id": tenant},
        )
    return shard


def split_shard(queue: str) -> tuple[str, str]:
    """``(logical queue, tenant)`` of a physical queue name (:data:`DEFAULT_TENANT` if unsharded)."""
    logical, mark, encoded = queue.partition(SHARD_MARK)
    if not mark:
        return queue, DEFAULT_TENANT
    try:
        return logical, _decode(encoded)
    except ValueError:  # not one of ours: a user's queue that happens to hold the mark
        return queue, DEFAULT_TENANT


def check_client_queue(queue: str, field: str = "queue") -> str:
    """``queue`` as a client names it: never a tenant's queue by its own name (that would
    reach another tenant's jobs, or bypass the tenant's placement), a 400 instead."""
    if SHARD_MARK in queue:
        raise InvalidRequest(
            f"'{field}' must not contain '{SHARD_MARK}': it marks tenants' own queues; "
            "name the queue and act for the tenant (X-OJS-Tenant) instead.",
            details={"field": field, "received": queue},
        )
    return queue


def place(job: Job) -> Job:
    """``job`` with its tenant settled (§5.3: the acting tenant goes into ``meta.tenant_id``
    unless the body names one; if both differ, 400) and its queue the tenant's shard.
    A job without a tenant, from a request acting for nobody, is returned unchanged."""
    check_client_queue(job.queue, "options.queue")
    acting = acting_tenant()
    named = job.meta.get("tenant_id") if job.meta else None
    if acting is None and named is None:
        return job
    if named is None:
        job.meta = {**job.meta, "tenant_id": acting}
        tenant = acting
    else:
        tenant = parse_tenant(named)
        if acting is not None and acting != tenant:
            raise InvalidRequest(
                f"The X-OJS-Tenant header ('{acting}') and meta.tenant_id ('{tenant}') differ.",
                details={"field": "meta.tenant_id", "header": acting, "received": tenant},
            )
    job.queue = shard_of(job.queue, tenant)
    return job


def place_by_meta(job: Job) -> Job:
    """``job`` in the queue of the tenant its ``meta.tenant_id`` names (jobs an actor
    stores, e.g. a workflow's steps: no request acts for anyone there)."""
    tenant = job.meta.get("tenant_id") if job.meta else None
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        return job  # none, or one no request could have given: stays in its queue
    try:
        job.queue = shard_of(job.queue, tenant)
    except InvalidRequest:
        pass  # the queue and tenant make too long a name: stays in its queue
    return job


def settle_workflow_tenant(requests: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    """The tenant of a workflow (§15.2) whose step requests are ``(path, request)``: the
    acting tenant, or else the one its steps name; every step inherits it in
    ``meta.tenant_id`` (changed in place). A step naming another tenant is a 400, as is a
    step queue holding the tenants' queue mark."""
    tenant = acting_tenant()
    for path, request in requests:
        options = request.get("options")
        queue = options.get("queue") if isinstance(options, dict) else None
        if isinstance(queue, str):
            check_client_queue(queue, f"{path}.options.queue")
        meta = request.get("meta")
        named = meta.get("tenant_id") if isinstance(meta, dict) else None
        if named is None:
            continue
        named = parse_tenant(named, f"{path}.meta.tenant_id")
        if tenant is None:
            tenant = named
        elif named != tenant:
            raise InvalidRequest(
                f"Step {path} names tenant '{named}' in a workflow of tenant '{tenant}'; "
                "a workflow's jobs all belong to its tenant.",
                details={"field": f"{path}.meta.tenant_id", "received": named, "tenant_id": tenant},
            )
    if tenant is not None:
        for _, request in requests:
            meta = request.get("meta")
            request["meta"] = {**(meta if isinstance(meta, dict) else {}), "tenant_id": tenant}
    return tenant


class ShardDirectory:
    """What a fetch claims from (§6.3, sharded queues): acting for a tenant, that tenant's
    queues only; acting for nobody (a shared worker), each queue and then its tenants'
    queues (claimed from by their weights), found in the queue registry (the ``queue:`` snapshots, one listing for every
    queue, re-read at most every ``refresh_ms``: a tenant's first job in a queue reaches
    shared workers of other processes within that)."""

    def __init__(self, snapshots: Snapshots, clock: Clock, refresh_ms: int) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._refresh_ms = refresh_ms
        self._shards: dict[str, list[str]] = {}
        self._loaded_at: int | None = None

    async def fetch_queues(self, queues: Sequence[str]) -> tuple[Sequence[str], bool]:
        """The queues to claim from, and whether tenants' queues were added (shared)."""
        for queue in queues:
            check_client_queue(queue, "queues[]")
        tenant = acting_tenant()
        if tenant is not None:
            return [shard_of(queue, tenant) for queue in queues], False
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_ms:
            self._loaded_at = now  # the fetches meanwhile use what is known
            await self._reload()
        shards = self._shards
        if not shards:
            return queues, False
        expanded: list[str] = []
        for queue in queues:
            expanded.append(queue)
            expanded.extend(shards.get(queue, ()))
        return (expanded, True) if len(expanded) > len(queues) else (queues, False)

    async def _reload(self) -> None:
        found: dict[str, list[str]] = {}
        for record in (await self._snapshots.list_snapshots("queue:")).values():
            name = record["name"]
            if SHARD_MARK in name:
                found.setdefault(split_shard(name)[0], []).append(name)
        self._shards = {queue: sorted(names) for queue, names in found.items()}


def queue_for(queue: str) -> str:
    """The physical queue the current request means by ``queue`` (stats, pause). A request
    acting for a tenant may not name a tenant's queue by its own name; one acting for
    nobody (an operator) may, as the queue listing shows them."""
    tenant = acting_tenant()
    if tenant is not None:
        check_client_queue(queue)
    return shard_of(queue, tenant)


def check_visible(job: Job) -> Job:
    """``job`` if the acting tenant may see it (a request acting for nobody sees every job);
    else the same 404 as a job that does not exist (§6: no cross-tenant visibility)."""
    tenant = acting_tenant()
    if tenant is not None and (job.meta or {}).get("tenant_id") != tenant:
        raise NotFound(
            f"Job '{job.id}' not found.", details={"resource_type": "job", "resource_id": job.id}
        )
    return job


def visible_queues(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queue records the acting tenant may list: all of them for nobody (an operator
    sees tenants' queues by their own names); a tenant's own queues, as it named them."""
    tenant = acting_tenant()
    if tenant is None:
        return list(records)
    return [
        {**record, "name": logical}
        for record in records
        for logical, owner in [split_shard(record["name"])]
        if owner == tenant
    ]


__all__ = [
    "DEFAULT_TENANT",
    "acting_as",
    "acting_tenant",
    "check_client_queue",
    "check_visible",
    "ShardDirectory",
    "parse_tenant",
    "place",
    "place_by_meta",
    "queue_for",
    "settle_workflow_tenant",
    "shard_of",
    "split_shard",
    "visible_queues",
]
