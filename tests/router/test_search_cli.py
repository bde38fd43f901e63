"""`smsmesh messages` and `smsmesh explain` as processes against a real router on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from aiohttp.test_utils import TestClient

Client = TestClient[object, object]
KEY = "local-dev-key"


async def cli(client: Client, *args: str) -> tuple[int, str, str]:
    url = str(client.make_url("")).rstrip("/")
    env = {k: v for k, v in os.environ.items() if k != "SMSMESH_API_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsmesh", *args, "--url", url, "--key", KEY,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def send(client: Client, to: str, client_ref: str) -> str:
    response = await client.post(
        "/v1/messages",
        json={"to": to, "text": "hi", "client_ref": client_ref},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status == 202
    message_id: str = (await response.json())["id"]
    return message_id


async def test_messages_table_json_and_all_pages(client: Client) -> None:
    ids = [await send(client, f"+4915112345{i:03d}", f"ref-{i}") for i in range(3)]
    await send(client, "+31612345678", "ref-nl")

    code, out, _ = await cli(client, "messages", "--to", "+49 151 12345 001")
    assert code == 0
    header, row, footer = out.strip().splitlines()
    assert header.split()[:4] == ["CREATED", "(UTC)", "ID", "TO"]
    assert ids[1] in row
    assert "+4915112345001" in row
    assert "accepted" in row
    assert "ref-1" in row
    assert footer == "1 message(s)"

    code, out, _ = await cli(client, "messages", "--limit", "2")
    assert code == 0
    assert "more with --cursor " in out.splitlines()[-1]

    code, out, _ = await cli(client, "messages", "--limit", "1", "--all", "--json")
    assert code == 0
    found = json.loads(out)
    assert [m["client_ref"] for m in found["messages"]] == ["ref-nl", "ref-2", "ref-1", "ref-0"]
    assert found["next_cursor"] is None


async def test_messages_names_a_bad_parameter(client: Client) -> None:
    code, out, err = await cli(client, "messages", "--status", "sent")
    assert code == 1
    assert out == ""
    assert "HTTP 400 invalid_parameter" in err
    assert "unknown status 'sent'" in err
    assert "(parameter status)" in err


async def test_explain_prints_routes_and_targets(client: Client) -> None:
    code, out, _ = await cli(client, "explain", "--to", "+31 6 1234 5678", "--text", "Code 1234")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "to +31612345678 from smsmesh: gsm7, 1 part"
    assert lines[1] == "route: otp-nl"
    match_rows = [line.split()[:2] for line in lines if line.startswith(("yes", "no"))]
    assert match_rows == [["yes", "otp-nl"]]
    assert any(line.split()[:3] == ["1", "sim", "unknown"] for line in lines)

    code, out, _ = await cli(client, "explain", "--to", "+4915112345678", "--text", "x", "--json")
    assert code == 0
    reply = json.loads(out)
    assert reply["route"] == "default"
    assert [r["matched"] for r in reply["explanation"]["routes"]] == [False, True]


async def test_explain_refusal_exits_1(client: Client) -> None:
    code, _, err = await cli(client, "explain", "--to", "hello", "--text", "x")
    assert code == 1
    assert "HTTP 400" in err
