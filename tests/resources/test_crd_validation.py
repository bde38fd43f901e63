"""The generated CRDs enforce what the models enforce: the schema checked with
jsonschema (with strict field validation, as `kubectl apply` does), CEL rules evaluated
with cel-python, on the same documents the pydantic validators judge.

Both are approximations of the API server (no pruning, no Kubernetes CEL extensions or
cost limits). Applying crds/ and examples/local/ to a real kube-apiserver 1.34 gave the
same verdicts; the Kubernetes end-to-end tests are where that is exercised.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from smsmesh.resources import SmppConnection, SmsApplication, SmsRoute
from smsmesh.resources.crdgen import build_crd
from smsmesh.resources.models import CUSTOM_KINDS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "local"

jsonschema = pytest.importorskip("jsonschema")
celpy = pytest.importorskip("celpy")


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    crd = build_crd(model)  # type: ignore[arg-type]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


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


# -- the schema enforces what the models enforce -----------------------------------------


def to_jsonschema(node: dict[str, Any], root: bool = True) -> dict[str, Any]:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema, with strict field validation:
    unknown fields are errors, as with `kubectl apply` (server-side field validation)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "description", "default"):
            continue
        if key == "properties":
            out[key] = {k: to_jsonschema(v, False) for k, v in value.items()}
        elif key == "items":
            out[key] = to_jsonschema(value, False)
        elif key == "anyOf":
            out[key] = [to_jsonschema(v, False) for v in value]
        elif key == "exclusiveMinimum":
            out[key] = node["minimum"]
        elif key == "exclusiveMaximum":
            out[key] = node["maximum"]
        else:
            out[key] = value
    if node.get("exclusiveMinimum"):
        out.pop("minimum", None)
    if node.get("exclusiveMaximum"):
        out.pop("maximum", None)
    if "properties" in node:
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


VALIDATORS = {
    m.__name__: jsonschema.Draft7Validator(to_jsonschema(schema_of(m))) for m in CUSTOM_KINDS
}


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = VALIDATORS[doc["kind"]]
    return [
        ".".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(doc)
    ]


def example_docs() -> list[dict[str, Any]]:
    docs = []
    for file in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(file.read_text()) if d["kind"] != "Secret"]
    return docs


def test_examples_pass_the_crd_schema() -> None:
    docs = example_docs()
    assert {d["kind"] for d in docs} == {
        "SmppConnection",
        "SmsRoute",
        "SmsApplication",
        "SmscSimulator",
    }
    for doc in docs:
        assert schema_errors(doc) == [], doc["metadata"]["name"]


MODELS = {m.__name__: m for m in CUSTOM_KINDS}


def conn_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmppConnection",
        "metadata": {"name": "c"},
        "spec": {"host": "smsc.example.net", "credentialsSecretRef": {"name": "s"}, **spec},
    }


def route_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmsRoute",
        "metadata": {"name": "r"},
        "spec": {"targets": [{"connection": "a"}], **spec},
    }


def app_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "smsmesh.io/v1alpha1",
        "kind": "SmsApplication",
        "metadata": {"name": "a"},
        "spec": {"apiKeySecretRefs": [{"name": "k", "key": "apiKey"}], **spec},
    }


SCHEMA_REJECTS = [
    conn_doc(port=0),
    conn_doc(port=65536),
    conn_doc(bindType="trx"),
    conn_doc(throughput={"tsp": 5}),
    conn_doc(throughput={"tps": 0}),
    conn_doc(throughput={"window": 0}),
    conn_doc(host="smsc example"),
    conn_doc(credentialsSecretRef={"name": "s", "password": "inline"}),
    {**conn_doc(), "spec": {"credentialsSecretRef": {"name": "s"}}},  # no host
    route_doc(targets=[]),
    route_doc(match={"countries": ["nl"]}),
    route_doc(match={"destinationPrefixes": ["06"]}),
    route_doc(match={"priorities": ["urgent"]}),
    route_doc(targets=[{"connection": "a", "weight": -1}]),
    route_doc(targets=[{"connection": "Bad_Name"}]),
    app_doc(apiKeySecretRefs=[]),
    app_doc(callbackUrl="ftp://x"),
    app_doc(defaultValiditySeconds=10),
]


@pytest.mark.parametrize("doc", SCHEMA_REJECTS, ids=lambda d: str(d["spec"])[:60])
def test_schema_and_model_reject_the_same_documents(doc: dict[str, Any]) -> None:
    assert schema_errors(doc), "the CRD schema accepts it"
    with pytest.raises(ValidationError):
        MODELS[doc["kind"]].model_validate(doc)


@settings(max_examples=200, deadline=None)
@given(
    port=st.integers(-5, 70000),
    window=st.integers(-2, 1100),
    tps=st.one_of(st.none(), st.floats(-1, 200000, allow_nan=False)),
    bind=st.sampled_from(["transceiver", "transmitter", "receiver", "trx", "Transceiver"]),
    host=st.from_regex(r"\A[a-z0-9. :\-]{0,12}\Z"),
)
def test_schema_and_model_agree_on_bounds(
    port: int, window: int, tps: float | None, bind: str, host: str
) -> None:
    doc = conn_doc(port=port, bindType=bind, host=host, throughput={"window": window, "tps": tps})
    try:
        SmppConnection.model_validate(doc)
        model_ok = True
    except ValidationError:
        model_ok = False
    assert (schema_errors(doc) == []) == model_ok


# -- CEL rules ---------------------------------------------------------------------------

_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule))
    return _PROGRAMS[rule]


def _typed(schema: dict[str, Any], value: Any) -> Any:
    """JSON numbers as the API server types them: `number` fields are doubles."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _typed(props.get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(schema.get("items", {}), v) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def cel_violations(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    out = []
    for rule in schema.get("x-kubernetes-validations", []):
        try:
            ok = bool(_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))
        except celpy.CELEvalError as exc:
            ok = False
            out.append(f"{path}: error {exc}")
        if not ok:
            out.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                out.extend(cel_violations(sub, value[key], f"{path}.{key}"))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out.extend(cel_violations(schema["items"], item, f"{path}[{i}]"))
    return out


def check_cel(doc: dict[str, Any]) -> list[str]:
    schema = schema_of(MODELS[doc["kind"]])
    return cel_violations(schema, _typed(schema, doc))


@pytest.mark.parametrize("model", CUSTOM_KINDS, ids=lambda m: m.__name__)
def test_every_cel_rule_compiles(model: type[BaseModel]) -> None:
    rules = [
        r["rule"]
        for _, node in _walk(schema_of(model))
        for r in node.get("x-kubernetes-validations", [])
    ]
    for rule in rules:
        _program(rule)


@pytest.mark.parametrize("model", CUSTOM_KINDS, ids=lambda m: m.__name__)
def test_cel_rules_accept_the_schema_defaults(model: type[BaseModel]) -> None:
    """The API server checks each rule against its node's `default` as written (for
    `default: {}`, before the nested defaults are filled in) and refuses the CRD if a
    rule fails or errors, e.g. on a missing key without a has() guard."""
    checked = 0
    for path, node in _walk(schema_of(model)):
        if "default" in node and "x-kubernetes-validations" in node:
            assert cel_violations(node, _typed(node, node["default"]), path) == [], path
            checked += 1
    if model is SmppConnection:
        assert checked >= 2  # tls and reconnect


def test_examples_pass_the_cel_rules() -> None:
    for doc in example_docs():
        defaulted = MODELS[doc["kind"]].model_validate(doc).manifest()  # as after defaulting
        assert check_cel(defaulted) == [], doc["metadata"]["name"]


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return apply


# (valid base, mutations that break it, CEL message, model message: None = the same)
CEL_CASES: list[tuple[dict[str, Any], list[Mutation], str, str | None]] = [
    (
        conn_doc(),
        [_set("spec.tls.insecureSkipVerify", True)],
        "require tls.enabled: true",
        "tls.insecureSkipVerify set but tls.enabled is false",
    ),
    (
        conn_doc(),
        [_set("spec.tls.serverName", "smsc.example.net")],
        "require tls.enabled: true",
        "tls.serverName set but tls.enabled is false",
    ),
    (
        conn_doc(tls={"enabled": True}),
        [
            _set("spec.tls.insecureSkipVerify", True),
            _set("spec.tls.caSecretRef", {"name": "ca", "key": "ca.crt"}),
        ],
        "tls.insecureSkipVerify and tls.caSecretRef contradict each other",
        None,
    ),
    (
        conn_doc(),
        [_set("spec.reconnect.initialDelaySeconds", 30), _set("spec.reconnect.maxDelaySeconds", 5)],
        "reconnect.maxDelaySeconds must be >= reconnect.initialDelaySeconds",
        "reconnect.maxDelaySeconds (5) must be >= reconnect.initialDelaySeconds (30)",
    ),
    (
        conn_doc(inbound={"application": "shop"}),
        [_set("spec.bindType", "transmitter")],
        "inbound.application needs a bind that receives",
        None,
    ),
    (
        conn_doc(),
        [_set("metadata.name", "Carrier_A")],
        "metadata.name must be an RFC 1123 label",
        "RFC 1123 label",
    ),
    (
        route_doc(),
        [_set("metadata.name", "a" * 64)],
        "metadata.name must be an RFC 1123 label",
        "RFC 1123 label",
    ),
    (conn_doc(), [_set("spec.submit.sourceTon", 7)], "sourceTon must be 'auto' or one of", None),
    (conn_doc(), [_set("spec.submit.sourceTon", "manual")], "sourceTon must be 'auto'", None),
    (conn_doc(), [_set("spec.submit.sourceNpi", 2)], "sourceNpi must be 'auto' or one of", None),
    (conn_doc(), [_set("spec.submit.destTon", 9)], "destTon must be one of", None),
    (conn_doc(), [_set("spec.submit.destNpi", 2)], "destNpi must be one of", None),
    (
        route_doc(),
        [_set("spec.targets", [{"connection": "a"}, {"connection": "b"}, {"connection": "a"}])],
        "each connection may appear only once in targets",
        "connection 'a' appears more than once in targets",
    ),
    (
        route_doc(),
        [_set("spec.targets", [{"connection": "a", "weight": 1}, {"connection": "b"}])],
        "set weight on every target or on none",
        None,
    ),
    (
        app_doc(),
        [_set("spec.inbound.numbers", ["3197"])],
        "inbound.numbers needs inbound.webhookUrl",
        None,
    ),
]


@pytest.mark.parametrize(
    ("base", "mutations", "cel_message", "model_message"),
    CEL_CASES,
    ids=[case[2][:40] for case in CEL_CASES],
)
def test_cel_rules_and_validators_agree(
    base: dict[str, Any], mutations: list[Mutation], cel_message: str, model_message: str | None
) -> None:
    model = MODELS[base["kind"]]
    valid = model.model_validate(base).manifest()  # defaulted, as the API server would
    assert check_cel(valid) == []
    broken = copy.deepcopy(valid)
    for mutate in mutations:
        mutate(broken)
    violations = check_cel(broken)
    assert any(cel_message in v for v in violations), violations
    with pytest.raises(ValidationError) as info:
        model.model_validate(broken)
    expected = model_message or cel_message
    assert any(expected in e["msg"] for e in info.value.errors()), info.value.errors()


def test_cel_accepts_valid_variants() -> None:
    for doc in [
        conn_doc(tls={"enabled": True, "insecureSkipVerify": True}),
        conn_doc(tls={"enabled": True, "caSecretRef": {"name": "ca", "key": "ca.crt"}}),
        conn_doc(submit={"sourceTon": 5, "sourceNpi": 0, "destTon": 1, "destNpi": 1}),
        conn_doc(bindType="receiver", inbound={"application": "shop"}),
        route_doc(targets=[{"connection": "a", "weight": 2}, {"connection": "b", "weight": 0}]),
        app_doc(inbound={"webhookUrl": "https://x.example/in", "numbers": ["3197"]}),
    ]:
        manifest = MODELS[doc["kind"]].model_validate(doc).manifest()
        assert check_cel(manifest) == [], doc["spec"]
        assert schema_errors(manifest) == [], doc["spec"]


def test_models_registry_matches_kinds() -> None:
    assert set(MODELS) == {"SmppConnection", "SmsRoute", "SmsApplication", "SmscSimulator"}
    assert MODELS["SmsRoute"] is SmsRoute
    assert MODELS["SmsApplication"] is SmsApplication
