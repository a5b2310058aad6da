"""The AWS backend (work in progress) on moto's server: the backend contract."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ojs_actors.backends import open_backend
from ojs_actors.backends.aws.backend import AwsBackend
from ojs_actors.testing.contract import BackendContract, BackendFactory

_prefixes = itertools.count()


class TestAwsBackend(BackendContract):
    @pytest.fixture
    def backend_factory(self, aws_options: dict[str, Any]) -> BackendFactory:
        """Each backend of a test its own key prefix in the test's table."""
        table = {k: aws_options[k] for k in ("endpoint_url", "region", "table")}

        def factory(**options: Any) -> Any:
            prefix = f"b{next(_prefixes)}:"
            return open_backend(AwsBackend(**table, prefix=prefix, **options))

        return factory
