"""How fast the SMSC simulator answers: submit_sm/s and receipts/s through one bind.

Runs the simulator in its own process (`smsmesh simulate`, as local mode does) and one
ESME built on smsmesh's SMPP core in this process, on uvloop. Not a pytest test (timed
assertions belong in benchmarks): run it by hand.

    .venv/bin/python tests/simulator/bench_simulator.py --messages 50000 --window 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from smsmesh.local import free_port
from smsmesh.smpp import BindType, DeliverSm, Pdu, SubmitSm, bind, connect, make_response

ROOT = Path(__file__).resolve().parents[2]


async def wait_listening(port: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_simulator(port: int, receipt_delay: float) -> subprocess.Popen[bytes]:
    """The simulator as local mode runs it: `smsmesh simulate`, in its own process."""
    smsmesh = Path(sys.executable).with_name("smsmesh")
    argv = [str(smsmesh), "--log-level", "WARNING", "simulate"]
    argv += ["--port", str(port), "--receipt-delay", str(receipt_delay)]
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def run(messages: int, window: int, receipt_delay: float) -> dict[str, float]:
    port = free_port()
    simulator = start_simulator(port, receipt_delay)
    try:
        await wait_listening(port, 20)
        receipts = 0
        all_receipts = asyncio.get_running_loop().create_future()

        async def on_request(pdu: Pdu) -> Pdu | None:
            nonlocal receipts
            if isinstance(pdu, DeliverSm):
                receipts += 1
                if receipts == messages and not all_receipts.done():
                    all_receipts.set_result(time.perf_counter())
            return make_response(pdu)

        session = await connect(
            "127.0.0.1", port, window=window, on_request=on_request, inbound_limit=1000
        )
        await bind(session, BindType.TRANSCEIVER, "bench", "bench")
        remaining = messages
        failures = 0

        async def worker() -> None:
            nonlocal remaining, failures
            while remaining > 0:
                remaining -= 1
                response = await session.request(
                    SubmitSm(
                        source_addr="12345",
                        destination_addr="4915123456789",
                        short_message=b"benchmark message",
                        registered_delivery=1,
                    )
                )
                if response.command_status:
                    failures += 1

        started = time.perf_counter()
        cpu_before = cpu_seconds(simulator.pid)
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(window))), 300)
        submitted = time.perf_counter()
        receipts_done = await asyncio.wait_for(all_receipts, 300)
        simulator_cpu = cpu_seconds(simulator.pid) - cpu_before
        await session.unbind()
        return {
            "messages": messages,
            "window": window,
            "submit_per_s": messages / (submitted - started),
            "receipts_per_s": messages / (receipts_done - started),
            "failures": failures,
            # share of one core the simulator used while the run lasted
            "simulator_cpu": simulator_cpu / (receipts_done - started),
        }
    finally:
        simulator.terminate()
        simulator.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--receipt-delay", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover
        runner = asyncio.Runner()
    with runner:
        result = runner.run(run(args.messages, args.window, args.receipt_delay))
    print(
        f"{result['messages']:.0f} messages, client window {result['window']:.0f}: "
        f"{result['submit_per_s']:,.0f} submit_sm/s answered, "
        f"all receipts at {result['receipts_per_s']:,.0f}/s, failures {result['failures']:.0f}; "
        f"simulator busy {result['simulator_cpu']:.0%} of one core"
    )


if __name__ == "__main__":
    main()
