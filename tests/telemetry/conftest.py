from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import hooks, make_gateway  # noqa: F401 - fixtures reused as they are
from tests.telemetry.otlp import OtlpReceiver


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
