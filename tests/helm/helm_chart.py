"""Render the chart with helm and read the result: what every chart test needs.

Values are passed as a JSON file (JSON is YAML), never as --set strings, so a test states
exactly the typed values it means.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "smsmesh"
HELM_TIMEOUT_S = 60.0
RELEASE = "smsmesh"
NAMESPACE = "sms"

# The smallest valid values: the store Secret is required.
REQUIRED: dict[str, Any] = {"store": {"existingSecret": "smsmesh-store"}}

# Every optional feature switched on (and the operator watching all namespaces).
EVERYTHING: dict[str, Any] = {
    "store": {"existingSecret": "smsmesh-store"},
    "operator": {"watchNamespace": ""},
    "router": {"pdb": {"enabled": True}},
    "simulator": {"enabled": True, "credentialsSecret": "sim-credentials"},
    "networkPolicy": {
        "enabled": True,
        "router": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}]},
        "store": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [5432]},
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} exited {returncode}:\n{stderr}")
        self.stderr = stderr


def run_helm(helm: Path, *args: str) -> str:
    """Run helm; stdout on success, HelmError (with stderr) otherwise."""
    proc = subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode != 0:
        raise HelmError(list(args), proc.returncode, proc.stderr)
    return proc.stdout


def values_file(tmp_path: Path, values: Mapping[str, Any], name: str = "values.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return path


def template(
    helm: Path,
    tmp_path: Path,
    values: Mapping[str, Any],
    *,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
) -> str:
    """`helm template` output (multi-document YAML) for these values."""
    return run_helm(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values_file(tmp_path, values)),
    )


@dataclass(frozen=True)
class Manifests:
    """The rendered objects, with lookups by kind and name."""

    objects: list[dict[str, Any]]

    @classmethod
    def parse(cls, text: str) -> Manifests:
        return cls([doc for doc in yaml.safe_load_all(text) if doc])

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.of_kind(kind)
            if o["metadata"]["name"] == name
            and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind/name, pod spec) of every workload."""
        for obj in self.objects:
            if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def render(helm: Path, tmp_path: Path, values: Mapping[str, Any], **kwargs: Any) -> Manifests:
    return Manifests.parse(template(helm, tmp_path, values, **kwargs))


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    """A container's env as name -> value, or -> valueFrom for references."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


Grant = tuple[str, str, str, str]


def grants(rules: list[dict[str, Any]]) -> set[Grant]:
    """(apiGroup, resource, resourceName or '*', verb) for every grant of a rule list."""
    out: set[Grant] = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for name in rule.get("resourceNames") or ["*"]:
                    for verb in rule.get("verbs", []):
                        out.add((group, resource, name, verb))
    return out
