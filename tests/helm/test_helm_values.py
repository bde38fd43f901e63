"""values.schema.json: every value the chart defines is validated, and bad values are refused
by helm itself with a message that names the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import CHART, REQUIRED, HelmError, template

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Keys a schema may know that values.yaml leaves unset on purpose (documented in comments).
UNSET_ON_PURPOSE = {("operator", "watchNamespace"), ("global",)}
# Free-form maps and Kubernetes objects passed through to the manifests as they are.
PASS_THROUGH = {
    "commonLabels", "podAnnotations", "podLabels", "nodeSelector", "affinity", "labels",
    "podSecurityContext", "containerSecurityContext", "resources",
}  # fmt: skip


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def leaves(tree: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the values.yaml keys the schema must describe (not into pass-through maps)."""
    out = []
    for key, value in tree.items():
        here = (*path, key)
        out.append(here)
        if isinstance(value, dict) and key not in PASS_THROUGH:
            out.extend(leaves(value, here))
    return out


def schema_at(path: tuple[str, ...]) -> dict[str, Any] | None:
    node = resolve(SCHEMA)
    for key in path:
        node = resolve(node)
        properties = node.get("properties", {})
        if key not in properties:
            return None
        node = resolve(properties[key])
    return node


def test_every_value_in_values_yaml_has_a_schema() -> None:
    missing = [".".join(p) for p in leaves(VALUES) if schema_at(p) is None]
    assert missing == []


def test_every_schema_property_is_a_value_in_values_yaml() -> None:
    """The reverse: no schema entry for a value that does not exist (a stale or misspelt key)."""

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> list[tuple[str, ...]]:
        node = resolve(node)
        out = []
        for key, sub in node.get("properties", {}).items():
            here = (*path, key)
            out.append(here)
            if key not in PASS_THROUGH:
                out.extend(walk(sub, here))
        return out

    def in_values(path: tuple[str, ...]) -> bool:
        node: Any = VALUES
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    # Schema-only paths below a list item (a NetworkPolicyPeer's fields) are not values keys.
    def below_array(path: tuple[str, ...]) -> bool:
        return any(
            resolve(schema_at(path[:i]) or {}).get("type") == "array" for i in range(1, len(path))
        )

    extra = [
        ".".join(p)
        for p in walk(SCHEMA, ())
        if not in_values(p) and p not in UNSET_ON_PURPOSE and not below_array(p)
        and not any(p[: len(u)] == u for u in UNSET_ON_PURPOSE)
    ]  # fmt: skip
    assert extra == []


def test_objects_refuse_unknown_keys() -> None:
    """additionalProperties is false on every object with named properties: typos fail."""

    def objects(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        if isinstance(node, dict):
            if "properties" in node:
                found.append((where, node))
            for key, sub in node.items():
                found.extend(objects(sub, f"{where}/{key}"))
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                found.extend(objects(sub, f"{where}/{i}"))
        return found

    open_objects = [
        w for w, node in objects(SCHEMA, "#") if node.get("additionalProperties") is not False
    ]
    assert open_objects == []


BAD_VALUES = [
    pytest.param({"store": {}}, "set store.existingSecret", id="no-store"),
    pytest.param(
        {"store": {"existingSecret": "db", "url": "postgresql://u@h/d"}},
        "set only one of store.existingSecret",
        id="both-stores",
    ),
    pytest.param({"store": {"url": "mysql://u@h/d"}}, "/store/url", id="store-url-scheme"),
    pytest.param(
        {"store": {"existingSecret": "Bad_Name"}}, "/store/existingSecret", id="secret-name"
    ),
    pytest.param({"router": {"replicas": "2"}}, "/router/replicas", id="replicas-string"),
    pytest.param({"router": {"replicas": 0}}, "/router/replicas", id="replicas-zero"),
    pytest.param({"router": {"replica": 2}}, "'replica' not allowed", id="typo"),
    pytest.param({"routr": {}}, "'routr' not allowed", id="top-level-typo"),
    pytest.param({"router": {"service": {"port": 70000}}}, "/router/service/port", id="port-range"),
    pytest.param(
        {"router": {"service": {"type": "Ingress"}}}, "/router/service/type", id="svc-type"
    ),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", id="pull-policy"),
    pytest.param({"image": {"digest": "md5:abc"}}, "/image/digest", id="digest"),
    pytest.param(
        {"operator": {"watchNamespace": "Not_A_Namespace"}}, "/operator/watchNamespace", id="ns"
    ),
    pytest.param({"operator": {"logLevel": "LOUD"}}, "/operator/logLevel", id="log-level"),
    pytest.param(
        {"router": {"resources": {"limits": {"memory": "lots"}}}},
        "/router/resources",
        id="quantity",
    ),
    pytest.param({"simulator": {"enabled": "yes"}}, "/simulator/enabled", id="bool-string"),
    pytest.param(
        {"simulator": {"receiptOutcome": "lost"}}, "/simulator/receiptOutcome", id="outcome"
    ),
    pytest.param(
        {"networkPolicy": {"router": {"ingressFrom": [{"podSelectr": {}}]}}},
        "'podSelectr' not allowed",
        id="peer-typo",
    ),
    pytest.param(
        {"networkPolicy": {"smscs": {"ports": []}}}, "/networkPolicy/smscs/ports", id="no-ports"
    ),
    pytest.param({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval", id="duration"),
    pytest.param(
        {"imagePullSecrets": [{"name": "regcred"}]}, "/imagePullSecrets/0", id="pull-secret-obj"
    ),
    pytest.param(
        {"router": {"replicas": 2, "pdb": {"enabled": True, "minAvailable": 2}}},
        "must be below router.replicas",
        id="pdb-blocks-drains",
    ),
]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(("bad", "message"), BAD_VALUES)
def test_bad_values_are_refused_with_a_clear_message(
    helm: Path, tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    values = deep_merge(REQUIRED, bad) if "store" not in bad else bad
    with pytest.raises(HelmError) as failure:
        template(helm, tmp_path, values)
    assert message in failure.value.stderr


def test_the_same_values_fixed_render(helm: Path, tmp_path: Path) -> None:
    """The refusals above are about the bad value, not the rest: a good twin renders."""
    good = deep_merge(
        REQUIRED,
        {
            "router": {"replicas": 3, "pdb": {"enabled": True, "minAvailable": 2}},
            "operator": {"watchNamespace": "apps", "logLevel": "DEBUG"},
            "image": {"digest": "sha256:" + "0" * 64, "pullPolicy": "Always"},
            "imagePullSecrets": ["regcred"],
            "simulator": {"enabled": True, "receiptOutcome": "mixed"},
            "metrics": {"serviceMonitor": {"interval": "1m"}},
        },
    )
    assert "kind: Deployment" in template(helm, tmp_path, good)
