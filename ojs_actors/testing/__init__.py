"""Test support shipped with the package, for this repository's tests and third parties'.

Import the modules directly (``import ojs_actors`` loads neither):

* :mod:`ojs_actors.testing.contract`: the backend contract, the test suite every backend
  passes, and the guide to writing a backend. Needs pytest and pytest-trio
  (``pip install 'ojs-actors[test]'``).
* :mod:`ojs_actors.testing.services`: the real services the tests run (Redis and the
  brokers of other backends), started on a free loopback port in a temporary directory.
* :mod:`ojs_actors.testing.moto`: moto's server with DynamoDB requests one at a time and
  transactions rolled back item by item (``SerialMotoServer`` runs it), since stock moto
  loses writes under concurrent transactions.
* :mod:`ojs_actors.testing.kafka`: a Kafka topic read back, as an external consumer of
  the kafka backend sees it (needs ``pip install 'ojs-actors[kafka]'``).
"""
