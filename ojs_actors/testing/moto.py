"""``moto_server`` with DynamoDB as isolated as DynamoDB: ``python -m ojs_actors.testing.moto
-H HOST -p PORT`` (the arguments of ``moto_server``), run by
:class:`~ojs_actors.testing.services.SerialMotoServer` (the tests' and the bench's moto).

moto's server handles each request in a thread of its own, and its DynamoDB does not lock:
a ``TransactWriteItems`` checks its conditions and writes its items while other threads
write too (two transactions may both pass a condition only one of them should), it backs
up the whole table with ``copy.deepcopy`` before it starts (failing with a 500 when
another thread changes the table meanwhile: "dictionary changed size during iteration"),
and a cancelled transaction puts that backup back, erasing every write other threads
made in between. Two server processes on one table (or one process's concurrent
writes) then see jobs lost and claims doubled that DynamoDB never produces; and the
backup makes every transaction cost a copy of the table, slower as the table grows.

Here every DynamoDB request runs alone (one lock; SQS is untouched, so its long polls
still wait side by side), which is what DynamoDB's serializable transactions and atomic
conditional writes guarantee; and a transaction backs up only the items it writes,
restoring them if it is cancelled.
"""

from __future__ import annotations

import copy
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_lock = threading.Lock()
_call_action = DynamoHandler.call_action
_transact_write_items = DynamoDBBackend.transact_write_items
WRITES = ("Put", "Delete", "Update")


def call_action(self: DynamoHandler) -> Any:
    """One DynamoDB request, while no other runs."""
    with _lock:
        return _call_action(self)


def _deepcopy_but_tables(value: Any, memo: Any = None) -> Any:
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


@contextmanager
def _tables_not_copied() -> Iterator[None]:
    """moto's transaction "backs up" each table as the table itself (under the lock)."""
    shim = types.SimpleNamespace(deepcopy=_deepcopy_but_tables)
    dynamodb_models.copy = shim  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        dynamodb_models.copy = copy  # type: ignore[attr-defined]


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> Any:
    """moto's transaction, with a backup of the items it writes instead of the tables."""
    backup: list[tuple[Table, Any, Any, Any]] = []
    try:
        for entry in transact_items:
            [(operation, request)] = entry.items()
            if operation not in WRITES:
                continue
            table = self.get_table(request["TableName"])
            if operation == "Put":
                names = [table.hash_key_attr, table.range_key_attr]
                key = {name: request["Item"][name] for name in names if name is not None}
            else:
                key = request["Key"]
            hash_value, range_value = self.get_keys_value(table, key)
            item = table.get_item(hash_value, range_value)
            backup.append((table, hash_value, range_value, copy.deepcopy(item)))
    except Exception:
        # A malformed request: moto's own code reports it (and backs up the tables).
        return _transact_write_items(self, transact_items)
    with _tables_not_copied():
        try:
            return _transact_write_items(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backup):
                if item is None:
                    table.delete_item(hash_value, range_value)
                elif range_value is not None:
                    table.items[hash_value][range_value] = item
                else:
                    table.items[hash_value] = item
            raise


def serve(argv: list[str]) -> None:
    """moto's server (``moto_server``'s arguments), patched as the module says."""
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    main(argv)


if __name__ == "__main__":
    serve(sys.argv[1:])
