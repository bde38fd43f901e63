"""Throughput of one connector through one bind (run by hand, not a test).

    .venv/bin/python tests/connector/bench_connector.py [--messages 30000] [--window 100]
        [--no-receipts] [--synchronous FULL|NORMAL] [--dir /tmp]

Three OS processes, as in production: the SMSC simulator (`smsmesh simulate`), the
connector (`smsmesh connector`, uvloop) and this script, which fills a fresh SQLite
store, then watches it. Reported: messages/s from the connector's bind to the moment
every message is submitted (and, with receipts, delivered), no TPS limit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smsmesh.local import free_port
from smsmesh.model import NewMessage, new_message_id
from smsmesh.store import SqliteStore

RESOURCES = """\
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{systemId: bench, password: bench}}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {{name: bench}}
spec:
  host: 127.0.0.1
  port: {port}
  credentialsSecretRef: {{name: creds}}
  throughput: {{window: {window}}}
  submit: {{registeredDelivery: {receipts}}}
"""


SIMULATOR = """\
from smsmesh import runtime
from smsmesh.simulator import SimulatorSettings, serve
settings = SimulatorSettings(port={port}, receipt_delay=0, window={window})
runtime.setup_logging("WARNING")
raise SystemExit(runtime.run(lambda stop: serve(settings, stop)))
"""


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


async def fill(path: Path, count: int, synchronous: str) -> None:
    store = SqliteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    await store.open()
    now = time.time()
    batch: list[NewMessage] = []
    for i in range(count):
        batch.append(
            NewMessage(
                id=new_message_id(),
                application="bench",
                source="smsmesh",
                destination=f"3161{i:07d}",
                text=f"Benchmark message number {i}",
                route="r",
                targets=("bench",),
                expires_at=now + 3600,
                created_at=now + i * 1e-6,
            )
        )
        if len(batch) == 1000:
            await store.accept(batch)
            batch = []
    if batch:
        await store.accept(batch)
    await store.close()


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))


def bound(db: Path) -> bool:
    with sqlite3.connect(db, timeout=30) as conn:
        row = conn.execute("SELECT state FROM connections WHERE name = 'bench'").fetchone()
    return bool(row and json.loads(row[0]).get("bound"))


def main() -> None:
    import asyncio

    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--no-receipts", action="store_true")
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    receipts = not args.no_receipts
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        db = folder / "bench.db"
        port = free_port()
        (folder / "res.yaml").write_text(
            RESOURCES.format(port=port, window=args.window, receipts=str(receipts).lower())
        )
        asyncio.run(fill(db, args.messages, args.synchronous))
        env = {**os.environ, "SMSMESH_LOG_LEVEL": "WARNING"}
        smsmesh = [sys.executable, "-m", "smsmesh"]
        # `smsmesh simulate` has no --window flag: run the same serve() with the
        # simulator's deliver_sm window as large as ours.
        sim = subprocess.Popen([sys.executable, "-c", SIMULATOR.format(
            port=port, window=args.window)], env=env)  # fmt: skip
        connector = None
        try:
            wait_port(port)
            url = f"sqlite:///{db}?synchronous={args.synchronous}"
            connector = subprocess.Popen(
                [*smsmesh, "connector", "--resources", str(folder), "--connection", "bench",
                 "--store", url],
                env=env,
            )  # fmt: skip
            while not bound(db):
                time.sleep(0.01)
            started = time.monotonic()
            final_state = "delivered" if receipts else "submitted"
            submitted_at = None
            while True:
                c = counts(db)
                done_submit = c.get("submitted", 0) + c.get("delivered", 0)
                if submitted_at is None and done_submit >= args.messages:
                    submitted_at = time.monotonic() - started
                if c.get(final_state, 0) >= args.messages:
                    break
                if connector.poll() is not None:
                    raise SystemExit(f"connector exited: {connector.returncode}; {c}")
                time.sleep(0.05)
            total = time.monotonic() - started
            assert submitted_at is not None
            print(
                f"{args.messages} messages, window {args.window}, receipts {receipts}, "
                f"synchronous={args.synchronous}\n"
                f"  all submitted after {submitted_at:.2f} s: "
                f"{args.messages / submitted_at:,.0f} messages/s\n"
                f"  all {final_state} after {total:.2f} s: {args.messages / total:,.0f} messages/s"
            )
        finally:
            for proc in (connector, sim):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()


if __name__ == "__main__":
    main()
