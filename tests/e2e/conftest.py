from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from smsmesh.simulator.server import Simulator
from tests.e2e.harness import Gateway, WebhookReceiver

GatewayFactory = Callable[..., Coroutine[Any, Any, Gateway]]


@pytest.fixture
async def hooks() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell a failed test apart."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def make_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, hooks: WebhookReceiver
) -> AsyncIterator[GatewayFactory]:
    """Start router + connector processes against an in-loop simulator; stop them after."""
    started: list[tuple[Gateway, Simulator]] = []

    async def make(*, sim_options: dict[str, Any] | None = None, **options: Any) -> Gateway:
        sim = Simulator(
            host="127.0.0.1",
            port=0,
            system_id="e2e",
            password="secret1",
            receipt_delay=0.05,
            **(sim_options or {}),
        )
        await sim.start()
        gateway = Gateway(tmp_path, sim, hooks, **options)
        started.append((gateway, sim))
        await gateway.start()
        return gateway

    yield make
    call = getattr(request.node, "report_call", None)
    if call is not None and call.failed:
        for gateway, _ in started:  # the processes' own account of what went wrong
            print(gateway.logs())
    for gateway, sim in started:
        await gateway.stop()
        await sim.stop()
