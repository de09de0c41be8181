"""deploy/kubernetes: every overlay renders to manifests valid against the Kubernetes schemas, with the shape
docs/operations.md promises (probes, limits, one beat, an HPA on web, a migrations Job, PgBouncer, policies)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

KUSTOMIZE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir())
KUBERNETES_VERSION = "1.31"


def merge(base, patch):
    """Strategic merge as far as these overlays need it: maps deep, lists of named items by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: merge(base.get(key), value) for key, value in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        named = {item["name"]: item for item in patch}
        return [merge(item, named.pop(item["name"])) if item["name"] in named else item for item in base] + list(
            named.values()
        )
    return copy.deepcopy(patch)


def render_in_python(folder: Path) -> list[dict]:
    """What `kubectl kustomize` makes of these files, for machines without kubectl (generated names unhashed)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        docs += render_in_python(path) if path.is_dir() else list(yaml.safe_load_all(path.read_text()))
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(f).name: (folder / f).read_text() for f in generator["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    for patch in kustomization.get("patches", []):
        change = yaml.safe_load((folder / patch["path"]).read_text())
        docs = [
            merge(doc, change)
            if (doc["kind"], doc["metadata"]["name"]) == (change["kind"], change["metadata"]["name"])
            else doc
            for doc in docs
        ]
    counts = {r["name"]: r["count"] for r in kustomization.get("replicas", [])}
    for doc in docs:
        if doc["metadata"]["name"] in counts and "replicas" in doc.get("spec", {}):
            doc["spec"]["replicas"] = counts[doc["metadata"]["name"]]
        if "namespace" in kustomization:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    return docs


def render(overlay: str) -> list[dict]:
    folder = KUSTOMIZE / "overlays" / overlay
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
        return list(yaml.safe_load_all(out))
    return render_in_python(folder)


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(overlay):
    docs = render(overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployment_has_the_promised_shape(overlay):
    docs = render(overlay)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"steerco-web", "steerco-worker", "steerco-beat", "pgbouncer"}
    beat = deployments["steerco-beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # never without one
    assert "redbeat.RedBeatScheduler" in beat["template"]["spec"]["containers"][0]["command"]  # the leader lock
    web = deployments["steerco-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
            assert "livenessProbe" in container or name == "steerco-beat", name
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "steerco-web" and hpa["spec"]["minReplicas"] >= 1
    (job,) = by_kind(docs, "Job").values()
    assert "manage.py migrate" in job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    policies = by_kind(docs, "NetworkPolicy")
    assert policies["steerco-default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_python_rendering_matches_kubectl(overlay):
    def shape(docs):  # generated ConfigMaps' names carry kubectl's hash; everything else must agree
        return sorted(
            (
                d["kind"],
                d["metadata"]["name"],
                d["metadata"].get("namespace"),
                str(d.get("spec", {}).get("replicas")),
                str(d.get("spec", {}).get("minReplicas")),
                str(d["metadata"].get("labels")),
            )
            for d in docs
            if d["kind"] != "ConfigMap"
        )

    assert shape(render_in_python(KUSTOMIZE / "overlays" / overlay)) == shape(render(overlay))
