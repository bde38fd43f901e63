"""The kind end-to-end workflow cannot run here (no Docker); check that it is a valid workflow
whose commands name files that exist, chart values that exist and render, and resource names
that match the examples it applies."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_chart import CHART, REPO, Manifests, run_helm

WORKFLOW_PATH = REPO / ".github" / "workflows" / "e2e-kind.yml"
WORKFLOW: dict[Any, Any] = yaml.safe_load(WORKFLOW_PATH.read_text())
STEPS: list[dict[str, Any]] = WORKFLOW["jobs"]["kind"]["steps"]
ENV: dict[str, str] = {k: str(v) for k, v in WORKFLOW["env"].items()}
EXAMPLES = REPO / "examples" / "kubernetes"


def script() -> str:
    """Every run: block, with the workflow's env substituted and continuations joined."""
    text = "\n".join(step.get("run", "") for step in STEPS)
    text = text.replace("\\\n", " ")
    for name, value in ENV.items():
        text = text.replace(f'"${name}"', value).replace(f"${name}", value)
    return text


def command(prefix: str) -> list[str]:
    """The one command line of the script starting with `prefix`, as words."""
    lines = [line.strip() for line in script().splitlines() if line.strip().startswith(prefix)]
    assert len(lines) == 1, f"expected one '{prefix}' command, found {len(lines)}"
    return shlex.split(lines[0])


def examples(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_is_a_workflow_triggered_on_pushes_and_pull_requests() -> None:
    triggers = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    job = WORKFLOW["jobs"]["kind"]
    assert job["runs-on"].startswith("ubuntu-")
    assert 0 < job["timeout-minutes"] <= 60
    assert WORKFLOW["permissions"] == {"contents": "read"}
    for step in STEPS:
        assert ("uses" in step) != ("run" in step), step
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]


def test_builds_the_image_and_loads_it_into_kind() -> None:
    uses = [step["uses"].split("@")[0] for step in STEPS if "uses" in step]
    assert "helm/kind-action" in uses
    assert "actions/checkout" in uses
    image = f"{ENV['IMAGE_REPOSITORY']}:{ENV['IMAGE_TAG']}"
    assert command("docker build") == ["docker", "build", "--tag", image, "."]
    assert (REPO / "Dockerfile").is_file()
    kind_step = next(s for s in STEPS if s.get("uses", "").startswith("helm/kind-action"))
    cluster = kind_step["with"]["cluster_name"]
    assert command("kind load") == ["kind", "load", "docker-image", image, "--name", cluster]
    # Steps that need the cluster come after it is created.
    order = [s.get("uses", s.get("run", "")) for s in STEPS]
    kind_at = order.index(kind_step["uses"])
    assert all(
        i > kind_at for i, text in enumerate(order) if "kubectl" in text or "helm install" in text
    )


def test_every_repository_path_it_names_exists() -> None:
    paths = set(re.findall(r"(?:examples|helm|hack|crds)/[\w./-]*", script()))
    assert paths
    for path in paths:
        assert (REPO / path.rstrip("/")).exists(), path


def helm_install_sets() -> list[str]:
    words = command("helm install")
    assert words[2:4] == [ENV["RELEASE"], "helm/smsmesh"]
    return [words[i + 1] for i, w in enumerate(words) if w == "--set"]


def test_helm_install_values_exist_and_render(helm: Path, tmp_path: Path) -> None:
    """The exact --set values of the workflow's helm install render with this chart (the
    schema refuses unknown keys), with the image it built, pulled never (kind load)."""
    sets = helm_install_sets()
    assert sets
    out = run_helm(
        helm, "template", ENV["RELEASE"], str(CHART), "--namespace", ENV["NAMESPACE"],
        *(arg for s in sets for arg in ("--set", s)),
    )  # fmt: skip
    rendered = Manifests.parse(out)
    for where, pod in rendered.pod_specs():
        container = pod["containers"][0]
        assert container["image"] == f"{ENV['IMAGE_REPOSITORY']}:{ENV['IMAGE_TAG']}", where
        assert container["imagePullPolicy"] == "Never", where
    simulator = rendered.get("Service", f"{ENV['RELEASE']}-simulator")
    # The example SmppConnection binds to that Service, with the Secret the simulator checks.
    (connection,) = examples(EXAMPLES / "10-connection.yaml")
    assert connection["spec"]["host"] == simulator["metadata"]["name"]
    assert connection["spec"]["port"] == simulator["spec"]["ports"][0]["port"]
    values = dict(s.split("=", 1) for s in sets)
    assert (
        connection["spec"]["credentialsSecretRef"]["name"] == values["simulator.credentialsSecret"]
    )


def test_names_it_uses_match_the_examples() -> None:
    text = script()
    secrets = {d["metadata"]["name"]: d for d in examples(EXAMPLES / "00-secrets.yaml")}
    dev = {
        (d["kind"], d["metadata"]["name"]): d for d in examples(EXAMPLES / "dev" / "postgres.yaml")
    }
    values = dict(s.split("=", 1) for s in helm_install_sets())
    assert values["simulator.credentialsSecret"] in secrets
    assert ("Secret", values["store.existingSecret"]) in dev
    assert "url" in dev[("Secret", values["store.existingSecret"])]["stringData"]
    assert ("Deployment", "postgres") in dev
    assert "rollout status deployment/postgres" in text
    # The API key it reads is the demo application's.
    (application,) = examples(EXAMPLES / "20-application.yaml")
    (key_ref,) = application["spec"]["apiKeySecretRefs"]
    assert f"get secret {key_ref['name']} -o jsonpath='{{.data.{key_ref['key']}}}'" in text
    assert key_ref["name"] in secrets
    # It waits for the example connection to be Ready, and the router Service it forwards to.
    (connection,) = examples(EXAMPLES / "10-connection.yaml")
    assert f"wait smppconnection/{connection['metadata']['name']} --for=condition=Ready" in text
    assert f"port-forward svc/{ENV['RELEASE']}-router 8080:80" in text.replace('"', "")


@pytest.mark.parametrize("loop", ["readyz", "/v1/messages", "/v1/messages/$id"])
def test_every_wait_loop_is_bounded(loop: str) -> None:
    """No unbounded polling: each loop around a curl runs a fixed number of times."""
    text = script()
    assert loop in text
    for match in re.finditer(r"for _ in \$\(seq (\d+)\); do", text):
        assert 0 < int(match.group(1)) <= 120
    assert "while true" not in text


def test_readme_install_command_renders(helm: Path) -> None:
    """The helm install of README's "Run on Kubernetes" section works with this chart."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Run on Kubernetes", 1)[1]
    text = section.replace("\\\n", " ")
    (line,) = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("helm install")]
    words = shlex.split(line)
    assert words[2:4] == ["smsmesh", "helm/smsmesh"]
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    out = run_helm(helm, "template", words[2], str(CHART), "-n", "smsmesh",
                   *(a for s in sets for a in ("--set", s)))  # fmt: skip
    rendered = Manifests.parse(out)
    assert rendered.get("Service", "smsmesh-simulator")
    # The names the section then uses exist.
    assert "port-forward svc/smsmesh-router 8080:80" in section
    secrets = {d["metadata"]["name"]: d for d in examples(EXAMPLES / "00-secrets.yaml")}
    assert f"Bearer {secrets['demo-api-key']['stringData']['apiKey']}" in section
