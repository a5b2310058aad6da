"""moto's server for the AWS cost scenario, with two fixes to its DynamoDB (bench only).

``python -m bench._moto -H 127.0.0.1 -p PORT`` is ``moto_server -H 127.0.0.1 -p PORT``
(the same server, the same API) after two changes that make moto's DynamoDB behave
as DynamoDB does under a steady load. They change how fast moto answers and stop
errors that only moto makes. They do not change what it answers:

1. **A transaction's rollback copies only the items it touches.** moto's
   ``transact_write_items`` deep-copies the whole table once per item of the
   transaction, so it can roll back. A 50-item transaction on a table of 5,000 items
   makes 250,000 item copies and takes seconds. Here the items the transaction
   touches are saved before it runs, and they are put back if it fails. The table
   copies are skipped, and moto's own code does everything else: conditions,
   writes, and the cancellation reasons. Tables with indexes or a stream are left
   to moto's own code. The backend's table has neither.
2. **One DynamoDB request at a time.** moto's server is threaded. A table copy
   racing a write in another thread fails with ``RuntimeError: dictionary changed
   size during iteration``: an HTTP 500 that botocore retries, so the request counts
   go up for a reason AWS never has. DynamoDB requests are serialized with a lock.
   SQS requests, long polls among them, are not.

Without these, a steady-state run on plain ``moto_server`` slows down as the table
grows (seconds per transaction after a few hundred jobs). The backend's 5 s
deadline then fails calls, and retried requests pollute the figures.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Callable
from typing import Any

LOCK = threading.RLock()


def _saved_items(
    backend: Any, transact_items: list[dict[str, Any]]
) -> list[tuple[Any, ...]] | None:
    """``(table, hash, range, copy of the item or None)`` of every item the transaction
    touches, or None where moto's own code should decide (indexes, streams, malformed
    input: its validation answers)."""
    saved: list[tuple[Any, ...]] = []
    for entry in transact_items:
        if len(entry) != 1:
            return None
        ((op_type, op),) = entry.items()
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None or table.indexes or table.global_indexes or table.stream_shard:
            return None
        attributes = op.get("Item") if op_type == "Put" else op.get("Key")
        try:
            hash_value, range_value = backend.get_keys_value(table, attributes)
        except Exception:
            return None
        current = table.get_item(hash_value, range_value)
        saved.append((table, hash_value, range_value, copy.deepcopy(current)))
    return saved


def _restore(saved: list[tuple[Any, ...]]) -> None:
    for table, hash_value, range_value, item in reversed(saved):
        if range_value is None:
            if item is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = item
        elif item is None:
            table.items[hash_value].pop(range_value, None)
        else:
            table.items[hash_value][range_value] = item


def _same_table(table: Any, memo: dict[int, Any]) -> Any:
    return table


def patch() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    original_transact: Callable[..., None] = DynamoDBBackend.transact_write_items
    original_call: Callable[..., Any] = DynamoHandler.call_action

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with LOCK:
            saved = _saved_items(self, transact_items) if len(transact_items) <= 100 else None
            if saved is None:
                return original_transact(self, transact_items)
            # moto "copies" each table, and on failure "restores" that copy: the same table
            # object here (nothing else runs meanwhile: LOCK), its items put back below.
            Table.__deepcopy__ = _same_table  # type: ignore[attr-defined]
            try:
                return original_transact(self, transact_items)
            except BaseException:
                _restore(saved)
                raise
            finally:
                del Table.__deepcopy__  # type: ignore[attr-defined]

    def call_action(self: Any) -> Any:
        with LOCK:
            return original_call(self)

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    patch()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
