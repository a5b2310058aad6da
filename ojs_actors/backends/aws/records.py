"""Job items read: :class:`JobReader` (``BatchGetItem``, strongly consistent)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...core import Job
from ..codec import loads_record
from .client import AwsClients
from .layout import Keys

BATCH_GET = 100
"""DynamoDB's limit of keys per ``BatchGetItem``."""


def job_of(item: dict[str, Any]) -> Job:
    return Job.from_record(loads_record(item["rec"]["S"]))


class JobReader:
    def __init__(self, aws: AwsClients, keys: Keys, table: str) -> None:
        self._aws, self._keys, self._table = aws, keys, table

    async def read(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """The stored jobs of these ids (the missing ones left out)."""
        found: dict[str, Job] = {}
        wanted = list(dict.fromkeys(job_ids))
        for start in range(0, len(wanted), BATCH_GET):
            keys = [self._keys.job(job_id) for job_id in wanted[start : start + BATCH_GET]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = await self._aws.dynamodb("batch_get_item", RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    job = job_of(item)
                    found[job.id] = job
                request = answer.get("UnprocessedKeys") or {}
        return found


__all__ = ["BATCH_GET", "JobReader", "job_of"]
