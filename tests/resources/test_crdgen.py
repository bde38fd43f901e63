"""CRDs generated from the models: fresh, deterministic, with the names, columns and
subresources kubectl users expect, and structural as apiextensions/v1 requires."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from smsmesh.resources import SmppConnection
from smsmesh.resources.crdgen import (
    CrdError,
    build_crd,
    main,
    openapi_schema,
    render_all,
    write_crds,
)
from smsmesh.resources.models import CUSTOM_KINDS, SmscSimulator

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    crd = build_crd(model)  # type: ignore[arg-type]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


# -- freshness and determinism -----------------------------------------------------------


def test_committed_crds_are_up_to_date() -> None:
    expected = render_all()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in CRDS.glob("*.yaml")}
    assert sorted(on_disk) == sorted(expected), "run: python -m smsmesh.resources.crdgen"
    for name, text in expected.items():
        assert on_disk[name] == text, f"crds/{name} is stale: python -m smsmesh.resources.crdgen"


def test_generation_is_deterministic_across_processes(tmp_path: Path) -> None:
    outputs = []
    for seed in ("0", "4242"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "smsmesh.resources.crdgen", "--output", str(out)],
            check=True,
            env=env,
            capture_output=True,
            timeout=60,
        )
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outputs[0] == outputs[1]
    assert {k: v.decode() for k, v in outputs[0].items()} == render_all()


def test_write_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_crds(tmp_path / "crds")
    assert sorted(p.name for p in paths) == [
        "smppconnections.smsmesh.io.yaml",
        "smsapplications.smsmesh.io.yaml",
        "smscsimulators.smsmesh.io.yaml",
        "smsroutes.smsmesh.io.yaml",
    ]
    assert main(["--output", str(tmp_path / "crds"), "--check"]) == 0
    paths[0].write_text(paths[0].read_text() + "# edited\n")
    assert main(["--output", str(tmp_path / "crds"), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--output", str(tmp_path / "crds")]) == 0
    assert main(["--output", str(tmp_path / "crds"), "--check"]) == 0


# -- CRD shape ---------------------------------------------------------------------------


def test_crd_names_columns_and_status_subresource() -> None:
    crd = build_crd(SmppConnection)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "smppconnections.smsmesh.io"
    assert spec["group"] == "smsmesh.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["smppconn", "smppc"]
    assert spec["names"]["categories"] == ["smsmesh"]
    version = spec["versions"][0]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Host", "Bind", "TPS Limit", "Window", "Ready", "Age"} <= set(columns)
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["TPS Limit"]["jsonPath"] == ".spec.throughput.tps"
    assert columns["Bind"] == {
        "name": "Bind",
        "type": "boolean",
        "jsonPath": ".status.bound",
        "description": "bind is up",
    }
    assert columns["Age"]["type"] == "date"
    # every printer column points at a field the schema has
    schema = version["schema"]["openAPIV3Schema"]
    for crd_model in CUSTOM_KINDS:
        s = schema_of(crd_model)
        for col in build_crd(crd_model)["spec"]["versions"][0]["additionalPrinterColumns"]:
            path = col["jsonPath"].split("[")[0].strip(".").split(".")
            if path[0] == "metadata":
                continue
            node = s
            for part in path:
                node = node.get("items", node)["properties"][part]
            assert node, col
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_short_names_of_every_kind() -> None:
    names = {m.__name__: build_crd(m)["spec"]["names"] for m in CUSTOM_KINDS}
    assert names["SmsRoute"]["shortNames"] == ["smsroute"]
    assert names["SmsApplication"]["shortNames"] == ["smsapp"]
    assert names["SmscSimulator"]["shortNames"] == ["smscsim"]
    assert "TESTS ONLY" in schema_of(SmscSimulator)["description"]


def test_defaults_descriptions_and_nested_object_defaults() -> None:
    spec = schema_of(SmppConnection)["properties"]["spec"]
    props = spec["properties"]
    assert props["port"]["default"] == 2775
    assert props["bindType"]["enum"] == ["transceiver", "transmitter", "receiver"]
    assert props["bindType"]["default"] == "transceiver"
    # default {} so the API server creates spec.tls and fills tls.enabled
    assert props["tls"]["default"] == {}
    assert props["tls"]["properties"]["enabled"]["default"] is False
    tps = props["throughput"]["properties"]["tps"]
    assert tps["nullable"] is True
    assert (tps["minimum"], tps["exclusiveMinimum"]) == (0, True)
    assert "unlimited" in tps["description"]
    ton = props["submit"]["properties"]["sourceTon"]
    assert ton["x-kubernetes-int-or-string"] is True
    assert ton["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert ton["default"] == "auto"
    assert sorted(spec["required"]) == ["credentialsSecretRef", "host"]
    assert "status" not in schema_of(SmppConnection)["required"]
    assert "default" not in schema_of(SmppConnection)["properties"]["status"]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in node.get("properties", {}).items():
            out.extend(_walk(sub, f"{path}.{key}"))
        if "items" in node:
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}.*"))
    return out


@pytest.mark.parametrize("model", CUSTOM_KINDS, ids=lambda m: m.__name__)
def test_schema_is_structural(model: type[BaseModel]) -> None:
    """The rules of apiextensions/v1 structural schemas, checked node by node."""
    schema = schema_of(model)
    text = yaml.safe_dump(schema)
    assert "$ref" not in text
    assert "title" not in {k for _, node in _walk(schema) for k in node}
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in _walk(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert node.get("type") in {
                "object",
                "array",
                "string",
                "integer",
                "number",
                "boolean",
            }, path
            for junctor in ("anyOf", "oneOf", "allOf", "not"):
                assert junctor not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "uniqueItems" not in node, path
        assert node.get("additionalProperties", True) is not False, path
        if node.get("type") == "array":
            assert "items" in node, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path
            assert "minimum" in node, path
        for rule in node.get("x-kubernetes-validations", []):
            assert set(rule) == {"rule", "message"}, path


def test_unsupported_union_is_an_error() -> None:
    class Bad(BaseModel):
        value: int | list[str]

    with pytest.raises(CrdError, match=r"Bad\.value: union"):
        openapi_schema(Bad)
