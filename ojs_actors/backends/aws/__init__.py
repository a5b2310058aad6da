"""The AWS backend (``--backend sqs``, issue 14): DynamoDB holds the state, SQS the hints.

Design
======

DynamoDB is the authority and keeps the order. One table (``DYNAMODB_TABLE``, key
``pk`` + ``sk``, both strings, on-demand billing) holds every item, each key starting
with the backend's ``prefix`` (empty by default; the tests give each backend its own):

==========================  ==========================  =====================================
``pk``                      ``sk``                      holds
==========================  ==========================  =====================================
``job#{id}``                ``#``                       the job: ``rec`` (the record's JSON,
                                                        ``Job.to_record()``), ``v`` (version,
                                                        the compare-and-set revision), ``st``,
                                                        ``q``
``ready#{queue}``           ``{lane}#{ms}#{id}``        a ready entry of version ``v``: lane
                                                        = 2**31 - priority (10 digits), ms =
                                                        when it became available; a Query in
                                                        key order is priority, then FIFO
``timer#{shard}``           ``{due ms}#{id}#{v}``       a timer of version ``v``
                                                        (:func:`~ojs_actors.backends.base.timers_of`),
                                                        shard = hash of the id (a few
                                                        partitions, read merged)
``dead#{queue}``            ``{ms}#{id}``               a dead-lettered job, version ``v``
``count#{queue}``           ``#``                       jobs by state (``ADD`` deltas)
``unique#{key}``            ``#``                       the job holding a unique key
``rate#{queue}``            ``#``                       the claim times of a rate window
``snap``                    ``{key}``                   a snapshot: ``val``, ``v``, ``o``
                                                        (first-save order)
``outseq``                  ``#``                       ``n``: the newest outbox entry's seq
``outbox#{seq // 1024}``    ``{seq}`` (15 digits)       an outbox entry: ``k`` (key), ``b``
                                                        (state before, ``*`` for an event
                                                        stored whole), ``r`` (record or event)
``outkey#{entry key}``      ``#``                       ``seq``: where that entry is (outbox
                                                        and outkey items carry ``exp``:
                                                        DynamoDB's TTL deletes them)
==========================  ==========================  =====================================

Writes. Every change is one ``TransactWriteItems`` (at most 100 items): each job's item
put with a condition on its version (``attribute_not_exists`` for a new one), the
index entries its new version needs (ready, timers, dead letter), the count deltas,
unique keys, and its outbox entries, numbered by moving ``outseq`` from the value this
process last saw (a condition: another process moved it meanwhile, so the transaction
is refused; read it again and retry). Index entries are written once and never
updated: an entry whose job moved to another version is stale, skipped and deleted by
the reader that meets it, so a reader always checks entries against the job items.

SQS carries hints, not the truth: after a write that makes jobs available, one
message per queue and write (``{"jobs": [[id, v], ...]}``) on the queue's SQS queue
(``SQS_QUEUE_PREFIX`` + name) wakes a process long-polling it; a hint whose job has
moved on is deleted, never run. Claims take the ready index's head (strict priority,
then FIFO), not whatever SQS delivers; a job whose hint was lost is still claimed by
the next poll, and a reconciler re-sends hints for ready entries older than a poll.
Leases, visibility timeouts and heartbeats are DynamoDB deadlines with millisecond
precision (timers), never SQS visibility.
"""

# Nothing is imported here: ``options`` (the settings the registry and ``aws-setup``
# share) must import without aiobotocore. The backend is ``.backend.AwsBackend``.
