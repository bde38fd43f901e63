"""Connector settings resolved from a folder of resource YAML, as `smsmesh connector` does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from smsmesh.resources import ResourceError
from smsmesh.smpp.pdu import BindType
from smsmesh.smpp.text import Encoding, SplitMode
from smsmesh_connector.service import settings_from_resources

SECRETS = """\
apiVersion: v1
kind: Secret
metadata: {name: carrier}
stringData: {systemId: acme, password: s3cr3t!}
---
apiVersion: v1
kind: Secret
metadata: {name: keys}
stringData: {k: key, ca: "-----BEGIN CERTIFICATE-----"}
"""

APPS = """\
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {name: shop}
spec:
  apiKeySecretRefs: [{name: keys, key: k}]
  inbound: {webhookUrl: "https://shop.example/mo", numbers: ["+3197010"]}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {name: bank}
spec:
  apiKeySecretRefs: [{name: keys, key: k}]
  inbound: {webhookUrl: "https://bank.example/mo", numbers: ["31970"]}
"""


def folder(tmp_path: Path, connection: str) -> Path:
    (tmp_path / "00-secrets.yaml").write_text(SECRETS)
    (tmp_path / "10-apps.yaml").write_text(APPS)
    (tmp_path / "20-conn.yaml").write_text(textwrap.dedent(connection))
    return tmp_path


FULL = """\
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: acme}
spec:
  host: smsc.acme.example
  port: 3775
  credentialsSecretRef: {name: carrier}
  systemType: VMA
  bindType: transmitter
  tls: {enabled: true, serverName: tls.acme.example, caSecretRef: {name: keys, key: ca}}
  throughput: {tps: 75, window: 25}
  keepAlive: {enquireLinkSeconds: 20, responseTimeoutSeconds: 7}
  reconnect: {initialDelaySeconds: 2, maxDelaySeconds: 30, multiplier: 3}
  submit:
    registeredDelivery: false
    sourceTon: 5
    sourceNpi: auto
    destTon: 2
    destNpi: 1
    longMessages: sar
    defaultEncoding: latin1
    serviceType: CMT
    maxAttempts: 7
    retryDelaySeconds: 9
"""


def test_every_field_is_taken_from_the_resources(tmp_path: Path) -> None:
    s = settings_from_resources(folder(tmp_path, FULL), "acme", "sqlite:///x.db")
    assert (s.name, s.store_url, s.host, s.port) == ("acme", "sqlite:///x.db",
                                                     "smsc.acme.example", 3775)  # fmt: skip
    assert (s.system_id, s.password, s.system_type) == ("acme", "s3cr3t!", "VMA")
    assert s.bind_type is BindType.TRANSMITTER
    assert s.tls.enabled
    assert s.tls.server_name == "tls.acme.example"
    assert s.tls.ca_data == "-----BEGIN CERTIFICATE-----"
    assert (s.tps, s.window, s.in_progress_limit) == (75, 25, 50)
    assert (s.enquire_link_interval, s.response_timeout) == (20, 7)
    assert (s.reconnect_initial, s.reconnect_max, s.reconnect_multiplier) == (2, 30, 3)
    assert s.registered_delivery is False
    assert (s.addressing.source_ton, s.addressing.source_npi) == (5, None)
    assert (s.addressing.dest_ton, s.addressing.dest_npi) == (2, 1)
    assert s.long_messages is SplitMode.SAR
    assert s.default_alphabet is Encoding.LATIN1
    assert (s.service_type, s.max_attempts, s.retry_delay) == ("CMT", 7, 9)
    # A transmitter receives nothing: no MO routing table.
    assert s.inbound_numbers == ()


def test_the_password_never_shows_in_repr(tmp_path: Path) -> None:
    s = settings_from_resources(folder(tmp_path, FULL), "acme", "sqlite:///x.db")
    assert "s3cr3t!" not in repr(s)
    assert "BEGIN CERTIFICATE" not in repr(s)


MINIMAL = """\
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: sim}
spec:
  host: 127.0.0.1
  credentialsSecretRef: {name: carrier}
"""


def test_defaults_and_mo_routing_by_number(tmp_path: Path) -> None:
    s = settings_from_resources(folder(tmp_path, MINIMAL), "sim", "sqlite:///x.db")
    assert s.port == 2775
    assert s.bind_type is BindType.TRANSCEIVER
    assert s.tls.context() is None
    assert (s.tps, s.window) == (None, 10)
    assert s.long_messages is SplitMode.UDH8
    assert s.default_alphabet is Encoding.GSM7
    assert s.registered_delivery is True
    assert (s.addressing.source_ton, s.addressing.source_npi) == (None, None)
    assert s.inbound_application is None
    # The longest matching prefix wins; no match: stored without a webhook.
    assert s.inbound_target("3197010") == ("shop", "https://shop.example/mo")
    assert s.inbound_target("+3197012") == ("bank", "https://bank.example/mo")
    assert s.inbound_target("4420000") == (None, None)


def test_inbound_application_of_the_connection_wins(tmp_path: Path) -> None:
    conn = MINIMAL + "  inbound: {application: bank}\n"
    s = settings_from_resources(folder(tmp_path, conn), "sim", "sqlite:///x.db")
    assert s.inbound_target("3197010") == ("bank", "https://bank.example/mo")


def test_environment_overrides_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSMESH_SECRET_CARRIER_PASSWORD", "fromenv")
    s = settings_from_resources(folder(tmp_path, MINIMAL), "sim", "sqlite:///x.db")
    assert s.password == "fromenv"


def test_unknown_connection_names_the_ones_there(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match=r"'nope' not found.*found: sim"):
        settings_from_resources(folder(tmp_path, MINIMAL), "nope", "sqlite:///x.db")


def test_missing_secret_is_a_clear_error(tmp_path: Path) -> None:
    conn = MINIMAL.replace("name: carrier", "name: absent")
    with pytest.raises(ResourceError, match="Secret 'absent' not found"):
        settings_from_resources(folder(tmp_path, conn), "sim", "sqlite:///x.db")


def test_missing_inbound_application_is_a_clear_error(tmp_path: Path) -> None:
    conn = MINIMAL + "  inbound: {application: ghost}\n"
    with pytest.raises(ResourceError, match="'ghost' does not exist"):
        settings_from_resources(folder(tmp_path, conn), "sim", "sqlite:///x.db")
