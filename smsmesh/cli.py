"""The `smsmesh` command: local mode, each process role, and tools for people at a terminal.

smsmesh up examples/local          whole gateway on this machine
smsmesh router|connector|simulate  one role (what a pod runs)
smsmesh send / status              talk to a running router
smsmesh messages / explain         search messages, ask which route a message would take
smsmesh crds                       regenerate the CRD YAML from the models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from smsmesh import runtime
from smsmesh.cli_messages import add_commands

DEFAULT_URL = "http://127.0.0.1:8080"


def _cmd_up(args: argparse.Namespace) -> int:
    from smsmesh.local import run_local

    runtime.setup_logging(args.log_level)
    return runtime.run(
        lambda stop: run_local(
            Path(args.folder),
            stop,
            data_dir=Path(args.data_dir),
            host=args.host,
            port=args.port,
            store_url=args.store,
        )
    )


def _cmd_router(args: argparse.Namespace) -> int:
    from smsmesh_router.app import RouterSettings, serve

    runtime.setup_logging(args.log_level)
    if not args.resources and not args.kube_snapshot:
        raise SystemExit("error: smsmesh router needs --resources or --kube-snapshot")
    settings = RouterSettings(
        store_url=args.store,
        resources=Path(args.resources or "."),
        host=args.host,
        port=args.port,
        webhooks=not args.no_webhooks,
        kube_snapshot=args.kube_snapshot,
        retention_days=args.retention_days or None,
    )
    return runtime.run(lambda stop: serve(settings, stop))


def _cmd_connector(args: argparse.Namespace) -> int:
    from smsmesh.telemetry.http import metrics_port_from_env
    from smsmesh_connector.service import serve, settings_from_resources

    runtime.setup_logging(args.log_level)
    try:
        port = metrics_port_from_env() if args.metrics_port is None else args.metrics_port
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    settings = settings_from_resources(Path(args.resources), args.connection, args.store)
    return runtime.run(lambda stop: serve(settings, stop, metrics_port=port))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from smsmesh.simulator.server import serve, settings_from_args

    runtime.setup_logging(args.log_level)
    settings = settings_from_args(args)
    return runtime.run(lambda stop: serve(settings, stop))


def _cmd_operator(args: argparse.Namespace) -> int:
    from smsmesh_operator.main import main as operator_main

    runtime.setup_logging(args.log_level)
    return operator_main(list(args.operator_args))


def _cmd_migrate(args: argparse.Namespace) -> int:
    from smsmesh.store import migrate

    if not args.store:
        raise SystemExit("error: give --store or set SMSMESH_STORE_URL")
    applied = asyncio.run(migrate(args.store))
    print("\n".join(applied) if applied else "schema up to date")
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from smsmesh.resources.crdgen import write_crds

    for path in write_crds(Path(args.output)):
        print(path)
    return 0


async def _http(method: str, url: str, key: str, body: Any = None) -> tuple[int, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(method, url, json=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


def _api_key(args: argparse.Namespace) -> str:
    key = args.key or os.environ.get("SMSMESH_API_KEY")
    if not key:
        raise SystemExit("error: give --key or set SMSMESH_API_KEY")
    return str(key)


def _print_reply(status: int, body: Any) -> int:
    print(json.dumps(body, indent=2, sort_keys=False))
    return 0 if status < 400 else 1


def _cmd_send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to, "text": args.text}
    if args.sender:
        body["from"] = args.sender
    if args.priority:
        body["priority"] = args.priority
    if args.callback_url:
        body["callback_url"] = args.callback_url
    status, reply = asyncio.run(_http("POST", f"{args.url}/v1/messages", _api_key(args), body))
    return _print_reply(status, reply)


def _cmd_status(args: argparse.Namespace) -> int:
    status, reply = asyncio.run(_http("GET", f"{args.url}/v1/messages/{args.id}", _api_key(args)))
    return _print_reply(status, reply)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 0-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsmesh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole gateway locally from a folder of YAML")
    up.add_argument("folder", help="folder of resource YAML (e.g. examples/local)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", default=".smsmesh", help="where the embedded store lives")
    up.add_argument("--store", default=None, help="store URL (default: SQLite in --data-dir)")
    up.set_defaults(func=_cmd_up)

    router = sub.add_parser("router", help="run the router (HTTP API)")
    router.add_argument("--resources", help="folder of resource YAML (local mode)")
    router.add_argument(
        "--kube-snapshot",
        metavar="NAMESPACE/NAME",
        help="follow the operator's routing snapshot (ConfigMap NAME, Secret NAME-keys) "
        "instead of --resources; credentials from the pod or $KUBECONFIG",
    )
    router.add_argument(
        "--store",
        default=os.environ.get("SMSMESH_STORE_URL"),
        required="SMSMESH_STORE_URL" not in os.environ,
        help="store URL, e.g. sqlite:///path.db (default: $SMSMESH_STORE_URL)",
    )
    router.add_argument("--host", default="127.0.0.1")
    router.add_argument("--port", type=int, default=8080)
    router.add_argument("--no-webhooks", action="store_true", help="do not deliver webhooks")
    router.add_argument(
        "--retention-days",
        type=float,
        default=float(os.environ.get("SMSMESH_RETENTION_DAYS", "30")),
        help="purge messages finished longer ago than this (0 keeps all)",
    )
    router.set_defaults(func=_cmd_router)

    connector = sub.add_parser("connector", help="run the connector of one SmppConnection")
    connector.add_argument("--resources", required=True, help="folder of resource YAML")
    connector.add_argument("--connection", required=True, help="SmppConnection name")
    connector.add_argument(
        "--store",
        default=os.environ.get("SMSMESH_STORE_URL"),
        required="SMSMESH_STORE_URL" not in os.environ,
        help="store URL (default: $SMSMESH_STORE_URL)",
    )
    connector.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="port of /metrics, /healthz, /readyz (default: $SMSMESH_METRICS_PORT or 9464; "
        "0: none); host from $SMSMESH_METRICS_HOST (default 127.0.0.1)",
    )
    connector.set_defaults(func=_cmd_connector)

    simulate = sub.add_parser("simulate", help="run the SMSC simulator")
    simulate.add_argument("--resources", help="folder with an SmscSimulator resource")
    simulate.add_argument("--name", help="SmscSimulator name in --resources")
    simulate.add_argument("--host", default=None)
    simulate.add_argument("--port", type=int, default=None)
    simulate.add_argument("--system-id", default=None)
    simulate.add_argument("--password", default=None)
    simulate.add_argument("--receipt-delay", type=float, default=None)
    simulate.add_argument("--receipt-outcome", default=None)
    simulate.add_argument("--throttle-tps", type=float, default=None)
    simulate.add_argument("--error-rate", type=float, default=None)
    simulate.add_argument("--mo-interval", type=float, default=None)
    simulate.add_argument("--id-style", choices=["decimal", "hex", "hex-receipt"], default=None)
    simulate.add_argument("--receipt-mode", choices=["both", "tlv", "text"], default=None)
    simulate.add_argument("--window", type=int, default=None, help="outstanding deliver_sm")
    simulate.add_argument("--seed", type=int, default=None)
    simulate.set_defaults(func=_cmd_simulate)

    operator = sub.add_parser(
        "operator", help="run the Kubernetes operator (arguments after it go to the operator)"
    )
    operator.add_argument("operator_args", nargs=argparse.REMAINDER)
    operator.set_defaults(func=_cmd_operator)

    migrate = sub.add_parser("migrate", help="apply the store's schema migrations and exit")
    migrate.add_argument("--store", default=os.environ.get("SMSMESH_STORE_URL"), help="store URL")
    migrate.set_defaults(func=_cmd_migrate)

    crds = sub.add_parser("crds", help="write the CRD YAML generated from the models")
    crds.add_argument("--output", default="crds")
    crds.set_defaults(func=_cmd_crds)

    for name, func, helptext in (
        ("send", _cmd_send, "send a message through a running router"),
        ("status", _cmd_status, "show a message's status and timeline"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--url", default=os.environ.get("SMSMESH_URL", DEFAULT_URL))
        p.add_argument("--key", default=None, help="API key (or SMSMESH_API_KEY)")
        p.set_defaults(func=func)
        if name == "send":
            p.add_argument("--to", required=True)
            p.add_argument("--from", dest="sender", default=None)
            p.add_argument("--text", required=True)
            p.add_argument("--priority", choices=["bulk", "normal", "high"], default=None)
            p.add_argument("--callback-url", default=None)
        else:
            p.add_argument("id")
    add_commands(sub)  # messages, explain
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Everything after `operator` belongs to the operator's own parser, options included
    # (argparse's REMAINDER will not take a leading `--option`).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "operator":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.operator_args = [*extra, *args.operator_args]
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
