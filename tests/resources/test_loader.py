"""Loading a folder of resource YAML: dispatch, errors that say where, Secrets, references."""

from __future__ import annotations

import base64
import logging
import shutil
from pathlib import Path

import pytest

from smsmesh.resources import (
    ResourceError,
    SecretKeyRef,
    load_folder,
    parse_resource,
    secret_env_name,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "local"

CONN = """\
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata:
  name: {name}
spec:
  host: smsc.example.net
  credentialsSecretRef:
    name: {secret}
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  systemId: acme
  password: s3cret
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_reads_every_yaml_file_sorted_multi_document(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", CONN.format(name="b", secret="creds"))
    write(
        tmp_path,
        "a.yaml",
        SECRET + "---\n" + CONN.format(name="a", secret="creds") + "---\n# empty document\n",
    )
    write(tmp_path, "notes.txt", "not yaml: [")
    write(tmp_path / "sub", "c.yaml", CONN.format(name="c", secret="creds"))  # not recursive
    res = load_folder(tmp_path, environ={})
    assert list(res.connections) == ["a", "b"]  # a.yaml before b.yml
    assert list(res.secrets) == ["creds"]
    assert res.validate_references() == []


def test_single_file_and_kubectl_list(tmp_path: Path) -> None:
    items = "".join(
        "  - " + "\n    ".join(CONN.format(name=n, secret="creds").splitlines()) + "\n"
        for n in ("x", "y")
    )
    path = write(tmp_path, "list.yaml", "apiVersion: v1\nkind: List\nitems:\n" + items)
    res = load_folder(path, environ={})
    assert sorted(res.connections) == ["x", "y"]


def test_unknown_kinds_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        tmp_path,
        "mixed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        + CONN.format(name="a", secret="creds"),
    )
    with caplog.at_level(logging.WARNING):
        res = load_folder(tmp_path, environ={})
    assert list(res.connections) == ["a"]
    assert len(res.warnings) == 1
    assert "mixed.yaml, document 1: skipping v1/ConfigMap" in res.warnings[0]
    assert "ConfigMap" in caplog.text


def test_invalid_object_names_file_document_object_and_field(tmp_path: Path) -> None:
    bad = CONN.format(name="b", secret="creds") + "  port: 0\n  throughput:\n    tsp: 5\n"
    write(tmp_path, "conns.yaml", CONN.format(name="a", secret="creds") + "---\n" + bad)
    with pytest.raises(ResourceError) as info:
        load_folder(tmp_path, environ={})
    err = info.value
    assert err.file is not None
    assert err.file.name == "conns.yaml"
    assert (err.document, err.kind, err.name) == (2, "SmppConnection", "b")
    text = str(err)
    assert text.startswith(f"{tmp_path / 'conns.yaml'}, document 2, SmppConnection/b: invalid")
    assert "  - spec.port: Input should be greater than or equal to 1" in text
    assert "  - spec.throughput.tsp: unknown field (check the spelling)" in text


def test_cross_field_errors_read_plainly(tmp_path: Path) -> None:
    text = CONN.format(name="a", secret="creds") + "  tls:\n    insecureSkipVerify: true\n"
    write(tmp_path, "c.yaml", text)
    with pytest.raises(ResourceError) as info:
        load_folder(tmp_path, environ={})
    assert "spec.tls: tls.insecureSkipVerify set but tls.enabled is false" in str(info.value)
    assert "Value error" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind: a: b\n", "not valid YAML at line 1, column 8: mapping values"),
        ("- just\n- a list\n", "document 1: a document must be a mapping"),
        ("metadata: {name: x}\n", "document 1: every document needs apiVersion and kind"),
        (
            CONN.format(name="a", secret="c").replace("v1alpha1", "v1"),
            "document 1, SmppConnection/a: unsupported apiVersion 'smsmesh.io/v1'",
        ),
        (
            CONN.format(name="Bad_Name", secret="c"),
            "SmppConnection/Bad_Name: invalid\n  - metadata.name: 'Bad_Name' is not a valid name",
        ),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, fragment: str) -> None:
    write(tmp_path, "x.yaml", text)
    with pytest.raises(ResourceError) as info:
        load_folder(tmp_path, environ={})
    assert str(info.value).startswith(str(tmp_path / "x.yaml"))
    assert fragment in str(info.value)


def test_yaml_error_reports_the_document(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", CONN.format(name="a", secret="c") + "---\nkind: [\n")
    with pytest.raises(ResourceError) as info:
        load_folder(tmp_path, environ={})
    assert "x.yaml, document 2: not valid YAML at line 11" in str(info.value)


def test_duplicate_names_name_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", CONN.format(name="same", secret="c"))
    write(tmp_path, "b.yaml", CONN.format(name="same", secret="c"))
    with pytest.raises(ResourceError) as info:
        load_folder(tmp_path, environ={})
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'b.yaml'}, document 1, SmppConnection/same")
    assert f"defined twice (first in {tmp_path / 'a.yaml'}, document 1)" in text


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ResourceError, match="no such file or folder"):
        load_folder(tmp_path / "nope")


# -- Secrets ------------------------------------------------------------------------------


def test_secret_values_from_yaml_and_env_override(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"from-data").decode()
    write(
        tmp_path,
        "s.yaml",
        SECRET + f"data:\n  apiKey: {encoded}\n",
    )
    env = {"SMSMESH_SECRET_CREDS_PASSWORD": "from-env"}
    res = load_folder(tmp_path, environ=env)
    assert res.secret_value(SecretKeyRef(name="creds", key="systemId")) == "acme"
    assert res.secret_value(SecretKeyRef(name="creds", key="password")) == "from-env"
    assert res.secret_value(SecretKeyRef(name="creds", key="apiKey")) == "from-data"


def test_env_var_alone_satisfies_a_missing_secret(tmp_path: Path) -> None:
    write(tmp_path, "c.yaml", CONN.format(name="a", secret="carrier-a.creds"))
    res = load_folder(tmp_path, environ={})
    problems = res.validate_references()
    assert len(problems) == 2  # systemId and password
    assert "SMSMESH_SECRET_CARRIER_A_CREDS_SYSTEMID" in problems[0]
    env = {
        "SMSMESH_SECRET_CARRIER_A_CREDS_SYSTEMID": "acme",
        "SMSMESH_SECRET_CARRIER_A_CREDS_PASSWORD": "pw",
    }
    res = load_folder(tmp_path, environ=env)
    assert res.validate_references() == []
    ref = res.connections["a"].spec.credentials_secret_ref
    assert res.secret_value(ref.password_ref()) == "pw"


def test_secret_env_name() -> None:
    assert (
        secret_env_name("sim-credentials", "password") == "SMSMESH_SECRET_SIM_CREDENTIALS_PASSWORD"
    )
    assert secret_env_name("a.b", "ca.crt") == "SMSMESH_SECRET_A_B_CA_CRT"


def test_missing_secret_or_key_fails_clearly_without_values(tmp_path: Path) -> None:
    write(tmp_path, "s.yaml", SECRET)
    res = load_folder(tmp_path, environ={})
    with pytest.raises(ResourceError) as info:
        res.secret_value(SecretKeyRef(name="other", key="password"))
    assert str(info.value) == (
        "Secret 'other' not found (needed for key 'password'); "
        "add it to the folder or set SMSMESH_SECRET_OTHER_PASSWORD"
    )
    with pytest.raises(ResourceError) as info:
        res.secret_value(SecretKeyRef(name="creds", key="apiKey"))
    text = str(info.value)
    assert "Secret 'creds' has no key 'apiKey' (keys: password, systemId)" in text
    assert "SMSMESH_SECRET_CREDS_APIKEY" in text
    assert "s3cret" not in text
    assert "acme" not in text


def test_invalid_secret_data_does_not_leak(tmp_path: Path) -> None:
    write(
        tmp_path,
        "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: 'hunter2 !!'\n",
    )
    with pytest.raises(ResourceError) as info:
        load_folder(tmp_path, environ={})
    assert "data.password is not base64-encoded" in str(info.value)
    assert "hunter2" not in str(info.value)


# -- references ---------------------------------------------------------------------------


def test_validate_references_lists_every_problem(tmp_path: Path) -> None:
    folder = tmp_path / "res"
    shutil.copytree(EXAMPLES, folder)
    write(
        folder,
        "90-broken.yaml",
        """\
apiVersion: smsmesh.io/v1alpha1
kind: SmsRoute
metadata: {name: broken}
spec:
  match: {applications: [ghost]}
  targets: [{connection: sim}, {connection: missing}, {connection: rx}]
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: rx}
spec:
  host: 127.0.0.1
  bindType: receiver
  credentialsSecretRef: {name: sim-credentials}
  inbound: {application: demo}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmppConnection
metadata: {name: rx2}
spec:
  host: 127.0.0.1
  credentialsSecretRef: {name: sim-credentials, passwordKey: pass}
  inbound: {application: nobody}
---
apiVersion: smsmesh.io/v1alpha1
kind: SmsApplication
metadata: {name: keyless}
spec:
  apiKeySecretRefs: [{name: demo-api-key, key: other}]
""",
    )
    problems = load_folder(folder, environ={}).validate_references()
    assert problems[:3] == [
        "SmsRoute/broken: target connection 'missing' does not exist",
        "SmsRoute/broken: target connection 'rx' is a receiver bind and cannot send",
        "SmsRoute/broken: match.applications names unknown 'ghost'",
    ]
    rest = "\n".join(problems[3:])
    assert "SmppConnection/rx: inbound.application 'demo' has no inbound.webhookUrl" in rest
    assert "SmppConnection/rx2: inbound.application 'nobody' does not exist" in rest
    assert "SmppConnection/rx2: Secret 'sim-credentials' has no key 'pass'" in rest
    assert "SmsApplication/keyless: Secret 'demo-api-key' has no key 'other'" in rest
    assert len(problems) == 7


def test_parse_resource_for_operator_bodies() -> None:
    body = {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmsRoute",
        "metadata": {
            "name": "r",
            "namespace": "sms",
            "uid": "1234",
            "generation": 2,
            "resourceVersion": "99",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [],
        },
        "spec": {"targets": [{"connection": "a"}]},
    }
    obj = parse_resource(body)
    assert obj is not None
    assert obj.metadata.uid == "1234"
    assert obj.metadata.resource_version == "99"
    assert parse_resource({"apiVersion": "apps/v1", "kind": "Deployment"}) is None
