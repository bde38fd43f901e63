"""`smsmesh messages` and `smsmesh explain`: search and routing questions from a terminal.

    smsmesh messages --to +4915112345678 --status failed,rejected --since 2024-05-01T00:00:00Z
    smsmesh messages --connection sim --all --json
    smsmesh explain --to +31612345678 --text "Your code is 1234" --priority high

Both talk to a running router's API with an application's key (--key or
SMSMESH_API_KEY), so they see what that application may see. Tables for people,
`--json` for scripts; a refused request prints the API's error and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_PAGES = 1000  # --all stops here rather than loop forever on a misbehaving server


class ApiFailure(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


async def _request(
    method: str, url: str, key: str, *, params: dict[str, str] | None = None, body: Any = None
) -> Any:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.request(method, url, params=params, json=body, headers=headers) as response,
    ):
        reply = await response.json(content_type=None)
        if response.status >= 400:
            raise ApiFailure(response.status, reply)
        return reply


def _key(args: argparse.Namespace) -> str:
    key = args.key or os.environ.get("SMSMESH_API_KEY")
    if not key:
        raise SystemExit("error: give --key or set SMSMESH_API_KEY")
    return str(key)


def table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    """Left-aligned columns as wide as their widest cell."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    for line in (headers, *rows):
        out.write("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


def _short_time(value: str) -> str:
    """`2024-05-01T12:00:00.123Z` -> `2024-05-01 12:00:00.123`: UTC, readable."""
    return value.replace("T", " ").rstrip("Z")


async def _search(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str | None]:
    params = {
        name: value
        for name, value in (
            ("to", args.to),
            ("status", args.status),
            ("connection", args.connection),
            ("since", args.since),
            ("until", args.until),
            ("limit", str(args.limit) if args.limit else None),
            ("cursor", args.cursor),
        )
        if value
    }
    url = f"{args.url.rstrip('/')}/v1/messages"
    key = _key(args)
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES if args.all else 1):
        page = await _request("GET", url, key, params=params)
        found.extend(page["messages"])
        cursor = page.get("next_cursor")
        if not cursor:
            return found, None
        params["cursor"] = cursor
    return found, cursor


def cmd_messages(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        messages, cursor = asyncio.run(_search(args))
    except ApiFailure as exc:
        return _failed(exc, out)
    if args.json:
        json.dump({"messages": messages, "next_cursor": cursor}, out, indent=2)
        out.write("\n")
        return 0
    rows = [
        (
            _short_time(m["created_at"]),
            m["id"],
            "+" + m["to"],
            m["status"],
            m["route"],
            m["connection"],
            str(m["attempts"]),
            m.get("client_ref") or "",
        )
        for m in messages
    ]
    headers = ("CREATED (UTC)", "ID", "TO", "STATUS", "ROUTE", "CONNECTION", "TRIES", "CLIENT REF")
    table(rows, headers, out)
    out.write(f"{len(messages)} message(s)")
    out.write(f"; more with --cursor {cursor}\n" if cursor else "\n")
    return 0


def cmd_explain(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    body: dict[str, Any] = {"to": args.to, "text": args.text, "priority": args.priority}
    if args.sender:
        body["from"] = args.sender
    url = f"{args.url.rstrip('/')}/v1/routes:explain"
    try:
        reply = asyncio.run(_request("POST", url, _key(args), body=body))
    except ApiFailure as exc:
        return _failed(exc, out)
    if args.json:
        json.dump(reply, out, indent=2)
        out.write("\n")
        return 0
    explanation = reply["explanation"]
    parts = "part" if reply["segments"] == 1 else "parts"
    out.write(f"to +{reply['to']} from {reply['from']}: ")
    out.write(f"{reply['encoding']}, {reply['segments']} {parts}\n")
    out.write(f"route: {reply['route'] or '(none)'}\n{explanation['summary']}\n\n")
    evaluated = [
        ("yes" if r["matched"] else "no", r["route"], "; ".join(r["reasons"]))
        for r in explanation["routes"]
    ]
    if evaluated:
        out.write("Routes evaluated, in order:\n")
        table(evaluated, ("MATCH", "ROUTE", "WHY"), out)
    if explanation["targets"]:
        out.write("\nTargets, in the order they are tried:\n")
        table(
            [
                (str(i), t["connection"], t["state"], t["reason"])
                for i, t in enumerate(explanation["targets"], start=1)
            ],
            ("#", "CONNECTION", "STATE", "WHY"),
            out,
        )
    return 0


def _failed(exc: ApiFailure, out: TextIO) -> int:
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {"message": str(exc.body)}
    found = body.get("details")
    details: dict[str, Any] = found if isinstance(found, dict) else {}
    where = details.get("parameter") or details.get("field")
    line = f"error: HTTP {exc.status} {body.get('error', '')}: {body.get('message', '')}"
    sys.stderr.write(line + (f" (parameter {where})" if where else "") + "\n")
    return 1


def add_commands(sub: Any) -> None:
    """Register `messages` and `explain` on the `smsmesh` parser's subcommands."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=os.environ.get("SMSMESH_URL", DEFAULT_URL))
        p.add_argument("--key", default=None, help="API key (or SMSMESH_API_KEY)")
        p.add_argument("--json", action="store_true", help="print the API's JSON")

    messages = sub.add_parser("messages", help="search this application's messages (newest first)")
    common(messages)
    messages.add_argument("--to", help="recipient, any usual notation (+49 151 ...)")
    messages.add_argument("--status", help="one or more statuses, comma-separated")
    messages.add_argument("--connection", help="current or last SmppConnection")
    messages.add_argument("--since", help="created at or after (RFC 3339 or unix seconds)")
    messages.add_argument("--until", help="created before (RFC 3339 or unix seconds)")
    messages.add_argument("--limit", type=int, default=None, help="per page (1-500, default 50)")
    messages.add_argument("--cursor", help="continue after a previous page")
    messages.add_argument("--all", action="store_true", help="follow every page")
    messages.set_defaults(func=cmd_messages)

    explain = sub.add_parser("explain", help="which route a message would take, and why")
    common(explain)
    explain.add_argument("--to", required=True)
    explain.add_argument("--text", required=True, help="decides encoding and parts")
    explain.add_argument("--from", dest="sender", default=None)
    explain.add_argument("--priority", choices=["bulk", "normal", "high"], default="normal")
    explain.set_defaults(func=cmd_explain)
