"""The resource models accept the shipped examples and reject mistakes readably."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from smsmesh.resources import (
    ConditionStatus,
    Secret,
    SmppConnection,
    SmsApplication,
    SmscSimulator,
    SmsRoute,
    load_folder,
    upsert_condition,
)
from smsmesh.resources.models import Condition, ResourceStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "local"


def connection(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmppConnection",
        "metadata": {"name": "carrier-a", "namespace": "sms", "generation": 3},
        "spec": {"host": "smsc.example.net", "credentialsSecretRef": {"name": "creds"}, **spec},
    }


def errors(model: type[Any], doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(doc)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


def test_examples_are_valid_and_complete() -> None:
    res = load_folder(EXAMPLES, environ={})
    assert set(res.connections) == {"sim"}
    assert set(res.routes) == {"otp-nl", "default"}
    assert set(res.applications) == {"demo"}
    assert set(res.simulators) == {"sim"}
    conn = res.connections["sim"].spec
    assert (conn.host, conn.port, conn.throughput.tps, conn.throughput.window) == (
        "127.0.0.1",
        2775,
        50,
        10,
    )
    sim = res.simulators["sim"].spec
    assert (sim.host, sim.port, sim.receipt_delay_seconds) == ("127.0.0.1", 2775, 1)
    app = res.applications["demo"].spec
    assert app.callback_url is None
    assert res.secret_value(app.api_key_secret_refs[0]) == "local-dev-key"
    assert res.routes["otp-nl"].spec.match.destination_prefixes == ["31"]
    assert res.routes["default"].spec.match.model_dump(exclude_defaults=True) == {}
    assert res.validate_references() == []
    assert res.warnings == []


def test_defaults_fill_a_minimal_connection() -> None:
    conn = SmppConnection.model_validate(connection())
    spec = conn.spec
    assert spec.port == 2775
    assert spec.bind_type == "transceiver"
    assert spec.credentials_secret_ref.system_id_key == "systemId"
    assert spec.credentials_secret_ref.password_key == "password"
    assert spec.tls.enabled is False
    assert spec.throughput.tps is None  # unlimited
    assert spec.throughput.window == 10
    assert spec.keep_alive.enquire_link_seconds == 30
    assert spec.reconnect.max_delay_seconds == 60
    assert spec.submit.source_ton == "auto"
    assert spec.submit.long_messages == "udh8"
    assert spec.submit.default_encoding == "gsm7"
    assert spec.submit.max_attempts == 5
    assert spec.inbound.application is None
    assert conn.status.conditions == []
    assert conn.metadata.namespace == "sms"
    assert conn.generation == 3


def test_snake_case_names_work_in_python_and_camel_case_on_the_wire() -> None:
    conn = SmppConnection.model_validate(connection(bindType="receiver"))
    wire = conn.manifest()
    assert wire["apiVersion"] == "smsmesh.io/v1alpha1"
    assert list(wire) == ["apiVersion", "kind", "metadata", "spec"]
    assert wire["spec"]["credentialsSecretRef"]["systemIdKey"] == "systemId"
    assert wire["spec"]["keepAlive"]["enquireLinkSeconds"] == 30
    assert "status" not in wire
    assert SmppConnection.model_validate(wire) == conn


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"throughput": {"tsp": 50}}, "spec.throughput.tsp", "Extra inputs"),
        ({"password": "secret"}, "spec.password", "Extra inputs"),  # never inline
        ({"port": 0}, "spec.port", "greater than or equal to 1"),
        ({"port": 70000}, "spec.port", "less than or equal to 65535"),
        ({"throughput": {"tps": 0}}, "spec.throughput.tps", "greater than 0"),
        ({"throughput": {"window": 0}}, "spec.throughput.window", "greater than or equal to 1"),
        ({"throughput": {"window": 1001}}, "spec.throughput.window", "1000"),
        ({"bindType": "trx"}, "spec.bindType", "'transceiver', 'transmitter' or 'receiver'"),
        ({"host": ""}, "spec.host", "at least 1"),
        ({"host": "smsc example"}, "spec.host", "pattern"),
        ({"submit": {"sourceTon": 7}}, "spec.submit.sourceTon", "'auto' or one of 0, 1, 2"),
        ({"submit": {"sourceTon": "manual"}}, "spec.submit.sourceTon", "'auto' or one of"),
        ({"submit": {"destNpi": 2}}, "spec.submit.destNpi", "destNpi must be one of"),
        ({"submit": {"longMessages": "udh"}}, "spec.submit.longMessages", "'udh8'"),
        ({"submit": {"defaultEncoding": "ucs2"}}, "spec.submit.defaultEncoding", "'gsm7'"),
        ({"systemType": "x" * 13}, "spec.systemType", "at most 12"),
        (
            {"credentialsSecretRef": {"name": "Creds_1"}},
            "spec.credentialsSecretRef.name",
            "pattern",
        ),
        (
            {"tls": {"insecureSkipVerify": True}},
            "spec.tls",
            "tls.insecureSkipVerify set but tls.enabled is false",
        ),
        (
            {"tls": {"serverName": "smsc.example.net"}},
            "spec.tls",
            "tls.serverName set but tls.enabled is false",
        ),
        (
            {
                "tls": {
                    "enabled": True,
                    "insecureSkipVerify": True,
                    "caSecretRef": {"name": "ca", "key": "ca.crt"},
                }
            },
            "spec.tls",
            "contradict each other",
        ),
        (
            {"reconnect": {"initialDelaySeconds": 30, "maxDelaySeconds": 5}},
            "spec.reconnect",
            "maxDelaySeconds (5) must be >= reconnect.initialDelaySeconds (30)",
        ),
        (
            {"bindType": "transmitter", "inbound": {"application": "shop"}},
            "spec",
            "inbound.application needs a bind that receives",
        ),
    ],
)
def test_connection_mistakes_are_named(spec: dict[str, Any], path: str, fragment: str) -> None:
    found = errors(SmppConnection, connection(**spec))
    assert any(p == path and fragment in m for p, m in found), found


def test_tls_when_enabled_is_accepted() -> None:
    conn = SmppConnection.model_validate(
        connection(
            tls={
                "enabled": True,
                "serverName": "smsc.example.net",
                "caSecretRef": {"name": "ca", "key": "ca.crt"},
            },
            submit={"sourceTon": 5, "sourceNpi": 0, "destTon": 1, "destNpi": 1},
        )
    )
    assert conn.spec.tls.ca_secret_ref is not None
    assert conn.spec.tls.ca_secret_ref.key == "ca.crt"
    assert conn.spec.submit.source_ton == 5


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("sim", True),
        ("carrier-a-1", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("Carrier", False),
        ("carrier_a", False),
        ("-carrier", False),
        ("carrier.a", False),
        ("", False),
    ],
)
def test_names_are_rfc1123_labels(name: str, ok: bool) -> None:
    doc = connection()
    doc["metadata"]["name"] = name
    if ok:
        assert SmppConnection.model_validate(doc).metadata.name == name
    else:
        found = errors(SmppConnection, doc)
        assert found[0][0] == "metadata.name"
        assert "RFC 1123 label" in found[0][1]


def test_wrong_kind_or_api_version_is_refused() -> None:
    doc = connection()
    doc["kind"] = "SmsRoute"
    assert errors(SmppConnection, doc)[0][0] == "kind"
    doc = connection()
    doc["apiVersion"] = "smsmesh.io/v1"
    assert errors(SmppConnection, doc)[0][0] == "apiVersion"


# -- SmsRoute ----------------------------------------------------------------------------


def route(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmsRoute",
        "metadata": {"name": "r"},
        "spec": {"targets": [{"connection": "a"}], **spec},
    }


def test_route_defaults_and_full_match() -> None:
    r = SmsRoute.model_validate(
        route(
            match={
                "destinationPrefixes": ["+31", "0032", "44"],
                "countries": ["NL"],
                "senders": ["Acme*", "+3197*"],
                "applications": ["shop"],
                "priorities": ["high", "normal"],
            }
        )
    )
    assert r.spec.priority == 100
    assert r.spec.match.senders == ["Acme*", "3197*"]  # numeric globs as sender values
    assert SmsRoute.model_validate(route()).spec.match.destination_prefixes == []


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"targets": []}, "spec.targets", "at least 1"),
        ({"targets": None}, "spec.targets", "valid list"),
        (
            {"targets": [{"connection": "a"}, {"connection": "a"}]},
            "spec.targets",
            "'a' appears more than once",
        ),
        (
            {"targets": [{"connection": "a", "weight": 1}, {"connection": "b"}]},
            "spec.targets",
            "weight on every target or on none",
        ),
        (
            {"targets": [{"connection": "a", "weight": -1}]},
            "spec.targets.0.weight",
            "greater than or equal to 0",
        ),
        ({"match": {"countries": ["nl"]}}, "spec.match.countries", "must be upper case: 'NL'"),
        ({"match": {"countries": ["NLD"]}}, "spec.match.countries.0", "pattern"),
        ({"match": {"destinationPrefixes": ["06"]}}, "spec.match.destinationPrefixes.0", "pattern"),
        (
            {"match": {"destinationPrefixes": ["31a"]}},
            "spec.match.destinationPrefixes.0",
            "pattern",
        ),
        ({"match": {"priorities": ["urgent"]}}, "spec.match.priorities.0", "'bulk', 'normal'"),
        ({"match": {"prefixes": ["31"]}}, "spec.match.prefixes", "Extra inputs"),
        ({"match": {"senders": ["Acme[1]"]}}, "spec.match.senders.0", "pattern"),
        ({"priority": -1}, "spec.priority", "greater than or equal to 0"),
    ],
)
def test_route_mistakes_are_named(spec: dict[str, Any], path: str, fragment: str) -> None:
    found = errors(SmsRoute, route(**spec))
    assert any(p == path and fragment in m for p, m in found), found


# -- SmsApplication ----------------------------------------------------------------------


def application(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmsApplication",
        "metadata": {"name": "shop"},
        "spec": {"apiKeySecretRefs": [{"name": "shop-key", "key": "apiKey"}], **spec},
    }


def test_application_accepts_a_full_spec() -> None:
    app = SmsApplication.model_validate(
        application(
            apiKeySecretRefs=[
                {"name": "shop-key", "key": "current"},
                {"name": "shop-key", "key": "next"},
            ],
            defaultSender="+31970123456",
            allowedSenders=["Shop*", "+3197*"],
            callbackUrl="https://shop.example.com/sms/status",
            inbound={"webhookUrl": "https://shop.example.com/sms/in", "numbers": ["+3197", "4567"]},
            maxTps=20,
            defaultValiditySeconds=3600,
        )
    )
    assert app.spec.default_sender == "+31970123456"  # kept as written
    assert app.spec.allowed_senders == ["Shop*", "3197*"]
    assert app.spec.default_validity_seconds == 3600
    assert SmsApplication.model_validate(application()).spec.default_validity_seconds == 86400


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"apiKeySecretRefs": []}, "spec.apiKeySecretRefs", "at least 1"),
        ({"apiKey": "inline"}, "spec.apiKey", "Extra inputs"),
        ({"defaultSender": "Way Too Long Sender"}, "spec.defaultSender", "at most"),
        ({"defaultSender": "Acme€"}, "spec.defaultSender", "'€'"),
        (
            {"defaultSender": "Other", "allowedSenders": ["Shop*"]},
            "spec",
            "defaultSender 'Other' is not in allowedSenders",
        ),
        ({"callbackUrl": "ftp://example.com/x"}, "spec.callbackUrl", "pattern"),
        ({"callbackUrl": "https://"}, "spec.callbackUrl", "pattern"),
        (
            {"inbound": {"numbers": ["3197"]}},
            "spec.inbound",
            "inbound.numbers needs inbound.webhookUrl",
        ),
        ({"defaultValiditySeconds": 8 * 86400}, "spec.defaultValiditySeconds", "604800"),
        ({"maxTps": 0}, "spec.maxTps", "greater than 0"),
    ],
)
def test_application_mistakes_are_named(spec: dict[str, Any], path: str, fragment: str) -> None:
    found = errors(SmsApplication, application(**spec))
    assert any(p == path and fragment in m for p, m in found), found


# -- SmscSimulator -----------------------------------------------------------------------


def test_simulator_defaults_and_bounds() -> None:
    doc = {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmscSimulator",
        "metadata": {"name": "sim"},
        "spec": {},
    }
    sim = SmscSimulator.model_validate(doc).spec
    assert (sim.host, sim.port, sim.receipt_delay_seconds, sim.receipt_outcome) == (
        "127.0.0.1",
        2775,
        1,
        "delivered",
    )
    assert sim.credentials_secret_ref is None
    assert sim.error_rate == 0
    bad = copy.deepcopy(doc)
    bad["spec"] = {"errorRate": 1.5, "receiptOutcome": "lost"}
    found = dict(errors(SmscSimulator, bad))
    assert "less than or equal to 1" in found["spec.errorRate"]
    assert "'mixed'" in found["spec.receiptOutcome"]


# -- Secret ------------------------------------------------------------------------------


def secret(**body: Any) -> Secret:
    return Secret.model_validate(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "smsc.creds"}, **body}
    )


def test_secret_data_string_data_and_missing_keys() -> None:
    s = secret(
        data={"password": base64.b64encode(b"from-data").decode(), "systemId": "c21zbWVzaA=="},
        stringData={"password": "from-string"},
    )
    assert s.get("password") == "from-string"  # stringData wins, as on the API server
    assert s.get("systemId") == "smsmesh"
    with pytest.raises(KeyError) as info:
        s.get("apiKey")
    message = info.value.args[0]
    assert message == "Secret 'smsc.creds' has no key 'apiKey' (keys: password, systemId)"
    assert "from-string" not in repr(s)


def test_secret_with_bad_base64_does_not_echo_the_value() -> None:
    with pytest.raises(ValidationError) as info:
        secret(data={"password": "not base64 hunter2!"})
    text = str(info.value)
    assert "data.password is not base64-encoded" in text
    assert "hunter2" not in text
    assert all("hunter2" not in str(e) for e in info.value.errors(include_input=False))


# -- conditions --------------------------------------------------------------------------


def test_upsert_condition_moves_time_only_on_status_change() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    conds = upsert_condition([], "Ready", False, "Reconciling", "starting", now=t0)
    conds = upsert_condition(conds, "Bound", True, "Bound", now=t0)
    same = upsert_condition(
        conds, "Ready", False, "BindFailed", "bad password", observed_generation=2, now=t1
    )
    ready = next(c for c in same if c.type == "Ready")
    assert ready.last_transition_time == t0  # status unchanged: time kept
    assert (ready.reason, ready.message, ready.observed_generation) == (
        "BindFailed",
        "bad password",
        2,
    )
    flipped = upsert_condition(same, "Ready", ConditionStatus.TRUE, "Bound", now=t1)
    ready = next(c for c in flipped if c.type == "Ready")
    assert ready.last_transition_time == t1
    assert [c.type for c in flipped] == ["Ready", "Bound"]  # order kept, no duplicates
    status = ResourceStatus(conditions=flipped, observed_generation=2)
    assert status.is_ready()
    assert status.condition("Bound") is not None
    assert status.condition("Missing") is None


def test_condition_rejects_bad_reason_and_status() -> None:
    with pytest.raises(ValidationError):
        Condition(type="Ready", status="Yes", reason="Ok")
    with pytest.raises(ValidationError):
        Condition(type="Ready", status=ConditionStatus.TRUE, reason="has spaces")


def test_status_ignores_unknown_fields_from_newer_writers() -> None:
    doc = connection()
    doc["status"] = {
        "observedGeneration": 3,
        "bound": True,
        "somethingNew": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Bound",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }
    doc["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    conn = SmppConnection.model_validate(doc)
    assert conn.status.bound is True
    assert conn.status.is_ready()
