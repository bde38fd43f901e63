"""`smsmesh operator [run] [options]`: run the operator (or print the RBAC it needs).

Settings come from the environment (see `config`); these flags override them, mostly
for tests and development outside a cluster (with $KUBECONFIG). The optional word `run`
(or `--`) lets options follow `smsmesh operator`, whose parser hands over everything
after the first word untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import kopf
import yaml

from smsmesh import runtime
from smsmesh_operator import names, rbac
from smsmesh_operator.config import ConfigError, OperatorConfig
from smsmesh_operator.handlers import build_registry, configure, login_function
from smsmesh_operator.service import SmsmeshOperator

log = logging.getLogger("smsmesh.operator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsmesh operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        help="namespace to serve (repeatable; default: $SMSMESH_WATCH_NAMESPACE, else "
        "$POD_NAMESPACE)",
    )
    parser.add_argument(
        "--all-namespaces", action="store_true", help="serve every namespace (ClusterRole)"
    )
    parser.add_argument("--store", help="store URL (default: $SMSMESH_STORE_URL)")
    parser.add_argument(
        "--liveness",
        default=None,
        help="liveness endpoint URL, or 'off' (default: http://0.0.0.0:8081/healthz)",
    )
    parser.add_argument("--status-interval", type=float, help="seconds between store reads")
    parser.add_argument("--heartbeat-interval", type=float, help="seconds between heartbeats")
    parser.add_argument("--stale-after", type=float, help="connector silence that means unbound")
    parser.add_argument("--watch-timeout", type=float, help="watch streams restart this often")
    parser.add_argument(
        "--print-rbac",
        choices=["operator", "router"],
        help="print the rules a Role needs (YAML) and exit",
    )
    return parser


def config_from_args(args: argparse.Namespace, environ: dict[str, str]) -> OperatorConfig:
    overrides: dict[str, object] = {
        "store_url": args.store,
        "status_interval": args.status_interval,
        "heartbeat_interval": args.heartbeat_interval,
        "stale_after": args.stale_after,
        "watch_server_timeout": args.watch_timeout,
    }
    if args.all_namespaces:
        overrides["namespaces"] = ()
    elif args.namespace:
        overrides["namespaces"] = tuple(sorted(set(args.namespace)))
    if args.liveness is not None:
        overrides["liveness_endpoint"] = "" if args.liveness == "off" else args.liveness
    return OperatorConfig.from_env(environ, **overrides)


def quiet_kopf() -> None:
    """kopf reports every indexed object and every probe at INFO: keep that for DEBUG."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in ("kopf.objects", "kopf.activities"):
            logging.getLogger(name).setLevel(logging.WARNING)


async def run_operator(config: OperatorConfig, stop: asyncio.Event) -> int:
    """Run until SIGTERM/SIGINT. kopf installs its own handlers for both (replacing
    runtime's), so `stop` is not handed to kopf: a flag nobody sets would leave a waiter
    task behind that kopf gives five seconds to finish at exit."""
    quiet_kopf()
    settings = kopf.OperatorSettings()
    op = SmsmeshOperator(config, login_function(settings))
    configure(settings, op)
    log.info(
        "serving %s; heartbeat in %s; store %s",
        ", ".join(config.namespaces) or "all namespaces",
        config.home_namespace,
        "configured" if config.store_url else "not configured",
    )
    try:
        await kopf.operator(
            registry=build_registry(op),
            settings=settings,
            standalone=True,
            clusterwide=config.clusterwide,
            namespaces=list(config.namespaces),
            liveness_endpoint=config.liveness_endpoint or None,
        )
    finally:
        await op.stop()
    return 0


def print_rbac(which: str) -> int:
    rules = rbac.operator_rules() if which == "operator" else rbac.router_rules()
    name = f"{names.APP_NAME}-{which}"
    print(yaml.safe_dump(rbac.role(name, "NAMESPACE", rules), sort_keys=False), end="")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] in (["run"], ["--"]):
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    if args.print_rbac:
        return print_rbac(args.print_rbac)
    try:
        config = config_from_args(args, dict(os.environ))
    except ConfigError as exc:
        print(f"smsmesh operator: {exc}", file=sys.stderr)
        return 2
    return runtime.run(lambda stop: run_operator(config, stop))
