"""deploy/kubernetes: what the manifests must keep true of the code they run, checked without a cluster.

`make check-deploy` validates every manifest against the Kubernetes schemas and scans it with checkov; these
tests hold what neither knows: the probes name routes the app has, the worker outlives its own shutdown grace,
KEDA watches the task queue the worker polls, no secret value is committed, the custom resources (KEDA,
Prometheus Operator) carry the fields their controllers need, and each overlay's patches land on something.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr

from api.app import create_app
from api.routes import codec, health
from settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(path.parent for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
WORKLOADS = {"Deployment", "Job"}
PUBLIC_PREFIXES = ("/api", "/auth")
SANDBOX_ONLY = {"seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}}

Manifest = dict[str, Any]


def kustomization(folder: Path) -> Manifest:
    loaded: Manifest = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return loaded


def manifests(folder: Path) -> Iterator[Manifest]:
    """Every resource a kustomization lists, its bases' first (a folder entry is a base)."""
    for entry in kustomization(folder)["resources"]:
        path = (folder / entry).resolve()
        if path.is_dir():
            yield from manifests(path)
        else:
            yield from (document for document in yaml.safe_load_all(path.read_text()) if document)


def base(kind: str, name: str) -> Manifest:
    found = [m for m in manifests(BASE) if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def pod_specs() -> Iterator[tuple[str, Manifest]]:
    for manifest in manifests(BASE):
        if manifest["kind"] in WORKLOADS:
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def container(deployment: str) -> Manifest:
    containers = base("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: Manifest = containers[0]
    return found


def environment(deployment: str) -> dict[str, Any]:
    return {variable["name"]: variable.get("value") for variable in container(deployment).get("env", [])}


def config() -> dict[str, str]:
    data: dict[str, str] = base("ConfigMap", "statex-config")["data"]
    return data


def secret_setting_names() -> set[str]:
    """The environment names of every setting typed SecretStr, and of the URLs that carry a password: their
    values belong in the Secret only."""
    return {"DATABASE_URL", "REDIS_URL"} | {
        name.upper()
        for name, field in Settings.model_fields.items()
        if field.annotation is SecretStr or SecretStr in getattr(field.annotation, "__args__", ())
    }


def test_every_manifest_file_is_listed_in_a_kustomization() -> None:
    """A file no kustomization lists is never applied, nor validated as part of a release."""
    listed = {
        (folder / entry).resolve()
        for folder in [BASE, *OVERLAYS]
        for entry in kustomization(folder)["resources"]
        if not (folder / entry).is_dir()
    }
    on_disk = {path.resolve() for path in KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml"}
    assert listed == on_disk


def test_the_api_probes_name_the_apps_health_routes() -> None:
    api = container("statex-api")
    routes = {route.path for route in health.router.routes}  # type: ignore[attr-defined]
    # Ready without the worker fleet: a worker outage must not take the API out of the Service.
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready?worker=false"
    assert "/ready" in routes
    assert api["livenessProbe"]["httpGet"]["path"] == "/health" in routes
    assert api["startupProbe"]["httpGet"]["path"] == "/health"
    port_names = {port["name"] for port in api["ports"]}
    assert {api[probe]["httpGet"]["port"] for probe in ("readinessProbe", "livenessProbe")} <= port_names


def test_the_api_drains_before_it_is_killed() -> None:
    """SIGTERM after the preStop pause (endpoints drop the pod first); uvicorn then lets requests in flight
    finish for API_SHUTDOWN_GRACE_SECONDS (the manifests' value, else the setting's default). The kubelet's
    SIGKILL must come after both."""
    pod = base("Deployment", "statex-api")["spec"]["template"]["spec"]
    pause = container("statex-api")["lifecycle"]["preStop"]["sleep"]["seconds"]
    default = Settings.model_fields["api_shutdown_grace_seconds"].default
    drain = float(
        environment("statex-api").get("API_SHUTDOWN_GRACE_SECONDS")
        or config().get("API_SHUTDOWN_GRACE_SECONDS")
        or default
    )
    assert pod["terminationGracePeriodSeconds"] >= pause + drain + 10


def test_the_worker_outlives_its_own_graceful_shutdown() -> None:
    """SIGTERM: the worker stops polling and lets running activities finish for WORKER_SHUTDOWN_GRACE_SECONDS;
    the kubelet's SIGKILL must come later, with room for the exit itself."""
    pod = base("Deployment", "statex-worker")["spec"]["template"]["spec"]
    shutdown_grace = float(environment("statex-worker")["WORKER_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] >= shutdown_grace + 15


def test_the_worker_reports_the_release_as_its_build_id() -> None:
    variables = {variable["name"]: variable for variable in container("statex-worker")["env"]}
    assert variables["WORKER_DEPLOYMENT_NAME"]["value"]
    field = variables["WORKER_BUILD_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    label = re.fullmatch(r"metadata\.labels\['(.+)'\]", field)
    assert label, field
    template_labels = base("Deployment", "statex-worker")["spec"]["template"]["metadata"]["labels"]
    assert label.group(1) in template_labels


@pytest.mark.parametrize(
    "overlay", [path for path in OVERLAYS if "images" in kustomization(path)], ids=lambda path: path.name
)
def test_an_overlays_image_tag_is_its_version_label(overlay: Path) -> None:
    """The tag and the version label are one release: the worker's build id is the label."""
    declared = kustomization(overlay)
    tags = {image["newTag"] for image in declared["images"]}
    versions = {pairs["pairs"]["app.kubernetes.io/version"] for pairs in declared["labels"]}
    assert len(tags) == 1 and tags == versions
    assert all(pairs.get("includeTemplates") for pairs in declared["labels"])


def test_every_container_is_bounded_and_unprivileged() -> None:
    """Limits and requests, a non-root user (the image's uid), a read-only root, no privilege escalation, no
    capability: for every container of every workload, the migrations Job included."""
    uid = int(re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1))  # type: ignore[union-attr]
    specs = dict(pod_specs())
    assert set(specs) == {"statex-api", "statex-worker", "statex-migrate"}
    for name, pod in specs.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for each in pod["containers"]:
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(each["resources"][bound]), (name, bound)
            context = each["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert not context.get("privileged"), name
            mounted = {mount["mountPath"] for mount in each["volumeMounts"]}
            assert {"/tmp", "/data"} <= mounted, name  # what a read-only root leaves writable
    assert config()["DATA_DIR"].startswith("/data/"), "DATA_DIR: a folder of the process's own in the emptyDir"
    api_mounts = {mount["mountPath"] for mount in container("statex-api")["volumeMounts"]}
    assert environment("statex-api")["PROMETHEUS_MULTIPROC_DIR"] in api_mounts


def test_only_the_worker_loosens_its_confinement_and_only_in_a_user_namespace() -> None:
    """The sandbox's bubblewrap needs user namespaces, mount and a fresh /proc (docker-compose.yml gives the
    worker the same three); checkov reads the pod's seccomp profile only, so the container-level exceptions
    are held here: the worker alone, inside a user namespace of its own, with no capability added."""
    for name, pod in pod_specs():
        context = pod["containers"][0]["securityContext"]
        loosened = {key: context[key] for key in (*SANDBOX_ONLY, "procMount") if key in context}
        if name == "statex-worker":
            assert loosened == {**SANDBOX_ONLY, "procMount": "Unmasked"}
            assert pod["hostUsers"] is False
        else:
            assert not loosened, name


def test_no_secret_value_is_committed() -> None:
    """Secrets come from the Secret statex-secrets by reference: no Secret object, no secret setting in the
    ConfigMap (base or overlay patch) or in a container's own env."""
    secret_names = secret_setting_names()
    assert {"JWT_SECRET", "PAYLOAD_KEYS", "TEMPORAL_API_KEY", "METRICS_TOKEN"} <= secret_names
    everything = [*manifests(BASE), *(m for overlay in OVERLAYS for m in manifests(overlay))]
    assert not [m for m in everything if m["kind"] == "Secret"]
    assert not secret_names & set(config())
    for overlay in OVERLAYS:
        for patch in kustomization(overlay).get("patches", []):
            patched = yaml.safe_load(patch["patch"])
            if isinstance(patched, dict) and patched["kind"] == "ConfigMap":
                assert not secret_names & set(patched["data"]), overlay
    for name, pod in pod_specs():
        for each in pod["containers"]:
            assert not secret_names & {variable["name"] for variable in each.get("env", [])}, name
            sources = [source for source in each["envFrom"] if "secretRef" in source]
            assert [source["secretRef"]["name"] for source in sources] == ["statex-secrets"], name


def test_keda_scales_the_worker_on_the_queue_it_polls() -> None:
    scaled = base("ScaledObject", "statex-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "statex-worker"
    base("Deployment", "statex-worker")  # the target exists
    assert scaled["spec"]["minReplicaCount"] >= 1  # never zero: a first start would wait for a pod
    (trigger,) = scaled["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "temporal"
    assert (
        metadata["taskQueue"] == config()["TEMPORAL_TASK_QUEUE"] == Settings.model_fields["temporal_task_queue"].default
    )
    assert metadata["endpoint"] == config()["TEMPORAL_ADDRESS"]
    assert metadata["namespace"] == config()["TEMPORAL_NAMESPACE"]
    assert set(metadata["queueTypes"].split(",")) == {"workflow", "activity"}
    for size in ("targetQueueSize", "activationTargetQueueSize"):
        assert isinstance(metadata[size], str) and metadata[size].isdigit()  # KEDA reads metadata as strings


def test_the_temporal_cloud_overlay_points_the_app_and_keda_at_one_namespace() -> None:
    overlay = KUBERNETES / "overlays" / "temporal-cloud"
    patches = kustomization(overlay)["patches"]
    cloud_config = next(yaml.safe_load(p["patch"]) for p in patches if "kind: ConfigMap" in p["patch"])["data"]
    operations = next(yaml.safe_load(p["patch"]) for p in patches if p.get("target", {}).get("kind") == "ScaledObject")
    values = {operation["path"]: operation["value"] for operation in operations}
    assert values["/spec/triggers/0/metadata/endpoint"] == cloud_config["TEMPORAL_ADDRESS"]
    assert values["/spec/triggers/0/metadata/namespace"] == cloud_config["TEMPORAL_NAMESPACE"]
    assert values["/spec/triggers/0/metadata/enableTLS"] == cloud_config["TEMPORAL_TLS"] == "true"
    authentication = next(m for m in manifests(overlay) if m["kind"] == "TriggerAuthentication")
    assert values["/spec/triggers/0/authenticationRef"] == {"name": authentication["metadata"]["name"]}
    (reference,) = authentication["spec"]["secretTargetRef"]
    assert reference == {"parameter": "apiKey", "name": "statex-secrets", "key": "TEMPORAL_API_KEY"}
    assert "TEMPORAL_API_KEY" in secret_setting_names()


def resolve(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer; KeyError or IndexError when it is not there."""
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda path: path.name)
def test_an_overlays_patches_land_on_what_its_bases_hold(overlay: Path) -> None:
    """kustomize fails on a patch whose target is gone (`make check-deploy` renders the overlays with it); this
    says which patch, and runs in `make test` where kubectl may be missing."""
    below = [m for entry in kustomization(overlay)["resources"] for m in manifests_of(overlay / entry)]
    for patch in kustomization(overlay).get("patches", []):
        content = yaml.safe_load(patch["patch"])
        if isinstance(content, dict):  # a strategic merge patch names its target itself, namespace included
            wanted = (content["kind"], content["metadata"]["name"], content["metadata"].get("namespace"))
            assert [m for m in below if identity(m) == wanted], (overlay, wanted)
            continue
        target = patch["target"]
        (resource,) = [m for m in below if (m["kind"], m["metadata"]["name"]) == (target["kind"], target["name"])]
        for operation in content:
            if operation["op"] == "replace":
                resolve(resource, operation["path"])
            else:
                parent, _, key = operation["path"].rpartition("/")
                assert key not in resolve(resource, parent), (overlay, operation["path"])  # `add`, not an overwrite


def identity(manifest: Manifest) -> tuple[str, str, str | None]:
    return manifest["kind"], manifest["metadata"]["name"], manifest["metadata"].get("namespace")


def manifests_of(path: Path) -> list[Manifest]:
    resolved = path.resolve()
    if resolved.is_dir():
        return list(manifests(resolved))
    return [document for document in yaml.safe_load_all(resolved.read_text()) if document]


def test_the_service_monitors_reach_the_metrics_ports() -> None:
    """Prometheus Operator: each ServiceMonitor selects a Service by its labels and names one of its ports;
    the API's /metrics wants METRICS_TOKEN."""
    services = [m for m in manifests(BASE) if m["kind"] == "Service"]
    monitors = [m for m in manifests(BASE) if m["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"statex-api", "statex-worker"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert selected, monitor["metadata"]["name"]
        ports = {port["name"] for service in selected for port in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    (api_endpoint,) = base("ServiceMonitor", "statex-api")["spec"]["endpoints"]
    credentials = api_endpoint["authorization"]["credentials"]
    assert credentials == {"name": "statex-secrets", "key": "METRICS_TOKEN"}
    assert config()["WORKER_METRICS_PORT"] == str(container("statex-worker")["ports"][0]["containerPort"])


def test_services_select_their_pods() -> None:
    for service in (m for m in manifests(BASE) if m["kind"] == "Service"):
        component = service["spec"]["selector"]["app.kubernetes.io/component"]
        pod = base("Deployment", f"statex-{component}")["spec"]["template"]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_the_ingress_routes_public_paths_only(tmp_path: Path) -> None:
    """NetworkPolicies cannot tell /metrics or /codec from /api on one port: the Ingress is where they are kept
    inside. Every path it routes is public, and every route of the app is public or kept inside."""
    ingress = base("Ingress", "statex-api")
    routed = {path["path"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]}
    assert routed == set(PUBLIC_PREFIXES)
    assert not codec.PREFIX.startswith(PUBLIC_PREFIXES)
    inside = {"/health", "/ready", "/metrics", codec.PREFIX}
    app = create_app(Settings(_env_file=None, environment="test", data_dir=tmp_path))  # type: ignore[call-arg]
    paths = {str(context.path) for context in iter_route_contexts(app.routes)}
    documentation = {"/docs", "/docs/oauth2-redirect", "/docs-assets", "/redoc", "/openapi.json"}  # off in production
    stray = {
        path
        for path in paths - documentation
        if not path.startswith(PUBLIC_PREFIXES) and not any(path == p or path.startswith(p + "/") for p in inside)
    }
    assert not stray


def test_network_policies_deny_by_default_and_keep_the_worker_to_prometheus() -> None:
    policies = {m["metadata"]["name"]: m["spec"] for m in manifests(BASE) if m["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    (worker_rule,) = policies["statex-worker-metrics"]["ingress"]
    assert [port["port"] for port in worker_rule["ports"]] == [int(config()["WORKER_METRICS_PORT"])]
    assert all("namespaceSelector" in peer and "podSelector" not in peer for peer in worker_rule["from"])
    (api_rule,) = policies["statex-api-ingress"]["ingress"]
    assert [port["port"] for port in api_rule["ports"]] == [int(config()["API_PORT"])]


def test_migrations_run_as_a_job_not_in_every_pod() -> None:
    job = base("Job", "statex-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "migrate"
    assert config()["RUN_MIGRATIONS_ON_START"] == "false"
