#!/usr/bin/env python3
"""Offline checks of the rendered Kustomize overlays (run by .ci/k8s-validate).

    check_manifests.py schema  --kubernetes-version 1.32.0 RENDERED.yaml
    check_manifests.py invariants --overlay dev|prod RENDERED.yaml
    check_manifests.py self-test --kubernetes-version 1.32.0 RENDERED-dev.yaml RENDERED-prod.yaml

`schema` validates every object against the Kubernetes JSON schemas bundled in the PyPI
package kubernetes-validate (strict: unknown fields are errors). Custom resources have no schema
there; only the kinds listed in CRD_KINDS are skipped, anything else without a schema fails.

`invariants` checks what the schema cannot: probes, resources, security context, grace period
against the configured drain, each part's listen address, endpoints, ports and internal
certificate against one another, NetworkPolicies (a default deny, and exactly the calls the code
makes: every call in CALLS allowed at both ends, no other call between parts), the gateway's
LoadBalancer, replicas, HPAs and PodDisruptionBudgets in prod.

`self-test` proves the invariant checks can fail: it breaks the rendered objects one way at a
time (a probe removed, a limit removed, ...) and expects each break to be reported.

Every failure is printed as one line; the exit code is 1 if there is any.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tomllib
from typing import Any, Callable

import yaml

# Custom resources: kubernetes-validate has no schema for them (they come from the operators'
# CRDs), so they are skipped by name, and only these.
CRD_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
}

# Every part of the binary (telehealth_kit::Part::ALL, gateway first; the integration test
# `k8s::the_manifest_checks_know_every_part_of_the_binary` keeps the two lists equal).
PARTS = ["gateway", "scheduling", "expertise", "wound", "signalling", "directory", "auth"]
SERVICES = PARTS[1:]
COMPONENT = "app.kubernetes.io/component"
BINARY = "/usr/local/bin/telehealth"
NAMESPACE = "telehealth"
SPIFFE_PREFIX = "spiffe://telehealth.internal/"

# Who calls whom between parts: the gateway forwards to every service; the calls between services
# are telehealth_kit::Part::calls (scheduling opens and closes signalling rooms and checks members
# and consents in the directory, signalling marks the waiting room, wound monitoring checks care
# teams and consents and asks tele-expertise about a wound, expertise checks consents and shares
# the patient, sign-in (auth) asks the directory for a professional's memberships), held equal to
# SERVICE_CALLS by tests/integration/k8s.rs. NetworkPolicies must allow exactly these calls
# between parts, on the callee's configured port.
SERVICE_CALLS = [("scheduling", "signalling"), ("scheduling", "directory"), ("signalling", "scheduling"), ("wound", "directory"), ("expertise", "directory"), ("wound", "expertise"), ("auth", "directory")]
CALLS = {("gateway", service) for service in SERVICES} | set(SERVICE_CALLS)


# What a part reaches outside the parts: (what, namespace, pod labels, protocol, port, callers).
# The namespace's pods are checked at both ends; the others at the caller only.
DEPENDENCIES = [
    ("PostgreSQL", NAMESPACE, {"cnpg.io/cluster": "telehealth-db"}, "TCP", 5432, SERVICES),
    ("the OTLP collector", "observability", {"app.kubernetes.io/name": "opentelemetry-collector"},
     "TCP", 4317, PARTS),
    ("DNS", "kube-system", {"k8s-app": "kube-dns"}, "UDP", 53, PARTS),
]

Doc = dict[str, Any]

# The NetworkPolicy that lets the monitoring namespace scrape every part's admin port.
METRICS_POLICY = "allow-metrics-scrape"


def load(path: str) -> list[Doc]:
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- schema -----------------------------------------------------------------------------------


def schema_errors(docs: list[Doc], version: str) -> tuple[list[str], list[str]]:
    """Errors, and the objects skipped as custom resources."""
    import kubernetes_validate

    errors, skipped = [], []
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_KINDS:
            skipped.append(name_of(doc))
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            errors.append(f"{name_of(doc)}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{name_of(doc)}: no schema for {key[0]} {key[1]} in Kubernetes {version} "
                "(a custom resource must be added to CRD_KINDS explicitly)"
            )
    return errors, skipped


# --- invariants -------------------------------------------------------------------------------


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") == kind]


def selects(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector matches `labels` (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def is_default_deny(policy: Doc) -> bool:
    spec = policy.get("spec", {})
    return (
        spec.get("podSelector") in ({}, None)
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def settings_env(docs: list[Doc]) -> dict[str, str]:
    """The TELEHEALTH_* variables of the `telehealth-settings` ConfigMap."""
    for config_map in by_kind(docs, "ConfigMap"):
        if config_map["metadata"]["name"].startswith("telehealth-settings"):
            return dict(config_map.get("data") or {})
    return {}


def telehealth_toml(docs: list[Doc]) -> dict[str, Any] | None:
    for config_map in by_kind(docs, "ConfigMap"):
        if config_map["metadata"]["name"].startswith("telehealth-config"):
            return tomllib.loads(config_map["data"]["telehealth.toml"])
    return None


def drain_seconds(docs: list[Doc], container: Doc) -> int | None:
    """shutdown.drain_seconds as the part sees it: env wins over the TOML file; default 10."""
    env = settings_env(docs)
    env.update({e["name"]: e.get("value") for e in container.get("env") or [] if "value" in e})
    if "TELEHEALTH_SHUTDOWN__DRAIN_SECONDS" in env:
        return int(env["TELEHEALTH_SHUTDOWN__DRAIN_SECONDS"])
    config = telehealth_toml(docs)
    if config is None:
        return None
    return int(config.get("shutdown", {}).get("drain_seconds", 10))


def container_errors(docs: list[Doc], deployment: Doc, part: str) -> list[str]:
    errors = []
    where = f"Deployment/{deployment['metadata']['name']}"
    pod = deployment["spec"]["template"]["spec"]
    pod_security = pod.get("securityContext") or {}
    containers = pod.get("containers") or []
    if not containers:
        return [f"{where}: no container"]
    config_maps = {c["metadata"]["name"] for c in by_kind(docs, "ConfigMap")}
    referred = [v["configMap"]["name"] for v in pod.get("volumes") or [] if "configMap" in v]
    for container in containers:
        referred += [e["configMapRef"]["name"] for e in container.get("envFrom") or [] if "configMapRef" in e]
    for name in referred:
        # ConfigMaps are all ours and rendered (generated names carry a hash): a reference that
        # kustomize did not rewrite points at nothing.
        if name not in config_maps:
            errors.append(f"{where}: refers to ConfigMap {name}, which is not rendered")
    for container in containers:
        at = f"{where} container {container.get('name')}"
        if container.get("args") != ["serve", part]:
            errors.append(f"{at}: args must be [serve, {part}], got {container.get('args')}")
        for probe in ("livenessProbe", "readinessProbe"):
            command = ((container.get(probe) or {}).get("exec") or {}).get("command") or []
            if command[:3] != [BINARY, "health", part]:
                errors.append(f"{at}: {probe} must exec `{BINARY} health {part}`, got {command}")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(bound) or {}):
                    errors.append(f"{at}: no {resource} in resources.{bound}")
        security = container.get("securityContext") or {}
        if security.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{at}: allowPrivilegeEscalation must be false")
        if security.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{at}: readOnlyRootFilesystem must be true")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{at}: capabilities must drop ALL")
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            errors.append(f"{at}: runAsNonRoot must be true")
        seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            errors.append(f"{at}: seccompProfile must be RuntimeDefault")
        drain = drain_seconds(docs, container)
        pause = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
            "seconds", 0
        )
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if drain is None:
            errors.append(f"{at}: no telehealth-config ConfigMap to read shutdown.drain_seconds")
        elif grace <= drain + pause:
            errors.append(
                f"{at}: terminationGracePeriodSeconds {grace} must exceed the preStop pause "
                f"({pause} s) + shutdown.drain_seconds ({drain} s)"
            )
    return errors


def service_settings(docs: list[Doc], part: str) -> tuple[str | None, list[str]]:
    """`<part>.listen` and `<part>.endpoints` as every part sees them (settings.env wins)."""
    section = (telehealth_toml(docs) or {}).get(part) or {}
    listen, endpoints = section.get("listen"), section.get("endpoints") or []
    env = settings_env(docs)
    listen = env.get(f"TELEHEALTH_{part.upper()}__LISTEN", listen)
    if f"TELEHEALTH_{part.upper()}__ENDPOINTS" in env:
        raw = env[f"TELEHEALTH_{part.upper()}__ENDPOINTS"]
        try:
            endpoints = json.loads(raw)
        except json.JSONDecodeError:
            endpoints = [raw]
    return listen, endpoints


def grpc_port(deployment: Doc) -> int | None:
    for container in deployment["spec"]["template"]["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "grpc":
                return port.get("containerPort")
    return None


def settings_errors(docs: list[Doc]) -> list[str]:
    """Each service listens on every interface on its container's port, and the others reach it
    at `https://<its Service>:<that port>`; the gateway listens on its container's port."""
    errors = []
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    gateway = deployments.get("gateway")
    gateway_listen = ((telehealth_toml(docs) or {}).get("gateway") or {}).get("listen", "")
    gateway_listen = settings_env(docs).get("TELEHEALTH_GATEWAY__LISTEN", gateway_listen)
    if gateway and not gateway_listen.endswith(f":{grpc_port(gateway)}"):
        errors.append(
            f"gateway.listen `{gateway_listen}` is not on the gateway container's port {grpc_port(gateway)}"
        )
    for part in SERVICES:
        deployment, service = deployments.get(part), services.get(part)
        if not deployment or not service:
            continue  # reported as missing
        listen, endpoints = service_settings(docs, part)
        port = grpc_port(deployment)
        if listen is None:
            errors.append(
                f"{part}.listen: not set in telehealth.toml or settings.env (the default is "
                "loopback only: no other pod could reach it)"
            )
            continue
        host, _, listen_port = listen.rpartition(":")
        if host not in ("0.0.0.0", "[::]"):
            errors.append(f"{part}.listen `{listen}` must be on every interface (0.0.0.0 or [::])")
        if listen_port != str(port):
            errors.append(f"{part}.listen `{listen}` is not on the container's grpc port {port}")
        service_ports = [p.get("port") for p in service["spec"].get("ports") or []]
        if port not in service_ports:
            errors.append(f"Service/{part}: ports {service_ports} do not include the container's {port}")
        expected = f"https://{part}:{port}"
        if endpoints != [expected]:
            errors.append(f"{part}.endpoints must be [{expected}] (its headless Service), got {endpoints}")
    return errors


def certificate_errors(docs: list[Doc]) -> list[str]:
    """Each part mounts a certificate of the internal CA naming it (SPIFFE URI SAN), valid for the
    name the others dial and for `localhost` (the probe)."""
    errors = []
    certificates = {
        c["spec"].get("secretName"): c
        for c in by_kind(docs, "Certificate")
        if c.get("apiVersion") == "cert-manager.io/v1"
    }
    for deployment in by_kind(docs, "Deployment"):
        part = (deployment["spec"]["template"]["metadata"].get("labels") or {}).get(COMPONENT)
        if part not in PARTS:
            continue
        volumes = deployment["spec"]["template"]["spec"].get("volumes") or []
        secret = next((v["secret"]["secretName"] for v in volumes if v.get("name") == "internal-tls"
                       and "secret" in v), None)
        certificate = certificates.get(secret)
        if certificate is None:
            errors.append(f"Deployment/{part}: its internal-tls volume ({secret}) is no Certificate's Secret")
            continue
        where = f"Deployment/{part}: its Certificate/{certificate['metadata']['name']}"
        spec = certificate["spec"]
        if spec.get("uris") != [f"{SPIFFE_PREFIX}{part}"]:
            errors.append(f"{where}: uris must be [{SPIFFE_PREFIX}{part}], got {spec.get('uris')}")
        if (spec.get("issuerRef") or {}).get("name") != "telehealth-internal":
            errors.append(f"{where}: must be issued by the internal CA (Issuer telehealth-internal)")
        names = spec.get("dnsNames") or []
        for name in (["localhost"] if part == "gateway" else [part, "localhost"]):
            if name not in names:
                errors.append(f"{where}: dnsNames must include `{name}`, got {names}")
    return errors


def port_matches(rule_ports: list[Doc] | None, protocol: str, port: int) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        start = entry["port"]
        if isinstance(start, int) and start <= port <= entry.get("endPort", start):
            return True
    return False


def peer_matches(peers: list[Doc] | None, own_namespace: str, namespace: str, labels: dict[str, str]) -> bool:
    """Whether a rule's `from`/`to` admits the pod (`namespace`, `labels`). An `ipBlock` is taken
    to match no pod: pod traffic to an ipBlock is left to the CNI, so it proves nothing."""
    if not peers:
        return True
    namespace_labels = {"kubernetes.io/metadata.name": namespace}
    for peer in peers:
        if "ipBlock" in peer:
            continue
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], namespace_labels):
                continue
        elif namespace != own_namespace:
            continue
        if "podSelector" in peer and not selects(peer["podSelector"], labels):
            continue
        return True
    return False


def allowed(policies: list[Doc], direction: str, pod: dict[str, str], peer_namespace: str,
            peer: dict[str, str], protocol: str, port: int) -> bool:
    """NetworkPolicy semantics for one direction of one connection of a pod of our namespace:
    open when no policy of that direction selects the pod, else when one of their rules admits
    the peer and port."""
    field, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p for p in policies
        if direction in (p["spec"].get("policyTypes") or []) and selects(p["spec"].get("podSelector"), pod)
    ]
    if not selecting:
        return True
    return any(
        port_matches(rule.get("ports"), protocol, port)
        and peer_matches(rule.get(peers_key), NAMESPACE, peer_namespace, peer)
        for policy in selecting
        for rule in policy["spec"].get(field) or []
    )


def network_errors(docs: list[Doc]) -> list[str]:
    errors = []
    policies = by_kind(docs, "NetworkPolicy")
    pods = {
        d["spec"]["template"]["metadata"].get("labels", {}).get(COMPONENT): d
        for d in by_kind(docs, "Deployment")
    }
    labels = {part: d["spec"]["template"]["metadata"].get("labels") or {} for part, d in pods.items()}
    ports = {part: grpc_port(d) for part, d in pods.items()}
    for caller in PARTS:
        for callee in SERVICES:
            if caller == callee or caller not in pods or callee not in pods or ports[callee] is None:
                continue
            port = ports[callee]
            out = allowed(policies, "Egress", labels[caller], NAMESPACE, labels[callee], "TCP", port)
            into = allowed(policies, "Ingress", labels[callee], NAMESPACE, labels[caller], "TCP", port)
            if (caller, callee) in CALLS and not (out and into):
                blocked = " and ".join(
                    what for what, ok in ((f"{caller}'s egress", out), (f"{callee}'s ingress", into)) if not ok
                )
                errors.append(f"NetworkPolicies do not let {caller} reach {callee} on {port} (blocked by {blocked})")
            if (caller, callee) not in CALLS and out and into:
                errors.append(f"NetworkPolicies let {caller} reach {callee} on {port}, which it never calls")
    for what, namespace, target, protocol, port, callers in DEPENDENCIES:
        for caller in callers:
            if caller not in pods:
                continue
            out = allowed(policies, "Egress", labels[caller], namespace, target, protocol, port)
            into = namespace != NAMESPACE or allowed(
                policies, "Ingress", target, NAMESPACE, labels[caller], protocol, port
            )
            if not (out and into):
                errors.append(f"NetworkPolicies do not let {caller} reach {what} on {protocol} {port}")
    return errors


def metrics_port_errors(docs: list[Doc], deployment: Doc, name: str) -> list[str]:
    """The container's `metrics` port is telemetry.admin_listen's, and only the scrape policy
    (from the monitoring namespace, that port only) admits it."""
    admin = ((telehealth_toml(docs) or {}).get("telemetry") or {}).get("admin_listen", "")
    admin = settings_env(docs).get("TELEHEALTH_TELEMETRY__ADMIN_LISTEN", admin)
    ports = [
        port.get("containerPort")
        for container in deployment["spec"]["template"]["spec"].get("containers") or []
        for port in container.get("ports") or []
        if port.get("name") == "metrics"
    ]
    if not admin or not ports or not admin.endswith(f":{ports[0]}"):
        return [f"Deployment/{name}: its metrics port {ports} is not telemetry.admin_listen `{admin}`"]
    policy = next((p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"] == METRICS_POLICY), None)
    if policy is None:
        return [f"NetworkPolicy/{METRICS_POLICY}: missing (Prometheus could not scrape {name})"]
    for rule in policy["spec"].get("ingress") or []:
        allowed = [(p.get("protocol"), p.get("port")) for p in rule.get("ports") or []]
        if allowed != [("TCP", ports[0])]:
            return [f"NetworkPolicy/{METRICS_POLICY}: admits {allowed or 'every port'}, not only TCP {ports[0]}"]
    return []


def invariant_errors(docs: list[Doc], overlay: str) -> list[str]:
    errors = []
    deployments = by_kind(docs, "Deployment")
    policies = by_kind(docs, "NetworkPolicy")
    if not any(is_default_deny(policy) for policy in policies):
        errors.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    found = {d["metadata"]["name"] for d in deployments}
    for part in PARTS:
        if part not in found:
            errors.append(f"Deployment/{part}: missing")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
        part = labels.get(COMPONENT, name)
        errors += container_errors(docs, deployment, part)
        # The part's own callers: the shared scrape policy (the admin port only) does not count.
        ingress_policies = [
            p["metadata"]["name"]
            for p in policies
            if not is_default_deny(p)
            and p["metadata"]["name"] != METRICS_POLICY
            and "Ingress" in (p["spec"].get("policyTypes") or [])
            and p["spec"].get("ingress")
            and selects(p["spec"].get("podSelector"), labels)
        ]
        if not ingress_policies:
            errors.append(f"Deployment/{name}: no NetworkPolicy allows ingress to its pods")
        errors += metrics_port_errors(docs, deployment, name)
        replicas = deployment["spec"].get("replicas")
        if overlay == "dev" and replicas != 1:
            errors.append(f"Deployment/{name}: dev runs one replica, got {replicas}")
        if overlay == "prod":
            errors += prod_errors(docs, deployment, labels, replicas)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    gateway = services.get("gateway")
    if not gateway or gateway["spec"].get("type") != "LoadBalancer":
        errors.append("Service/gateway: must be of type LoadBalancer")
    for part in PARTS[1:]:
        service = services.get(part)
        if not service or service["spec"].get("type", "ClusterIP") != "ClusterIP":
            errors.append(f"Service/{part}: must exist and be ClusterIP (reachable in-cluster only)")
    errors += settings_errors(docs)
    errors += certificate_errors(docs)
    errors += network_errors(docs)
    return errors


def prod_errors(docs: list[Doc], deployment: Doc, labels: dict[str, str], replicas) -> list[str]:
    name = deployment["metadata"]["name"]
    errors = []
    if replicas is not None and replicas < 2:
        errors.append(f"Deployment/{name}: prod needs at least 2 replicas, got {replicas}")
    hpas = [
        h
        for h in by_kind(docs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
        and h["spec"]["scaleTargetRef"].get("name") == name
    ]
    if not hpas:
        errors.append(f"Deployment/{name}: no HorizontalPodAutoscaler")
    for hpa in hpas:
        if hpa["spec"].get("minReplicas", 1) < 2:
            errors.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: minReplicas < 2")
    if not any(selects(p["spec"].get("selector"), labels) for p in by_kind(docs, "PodDisruptionBudget")):
        errors.append(f"Deployment/{name}: no PodDisruptionBudget selects its pods")
    spread = deployment["spec"]["template"]["spec"].get("topologySpreadConstraints") or []
    if not spread:
        errors.append(f"Deployment/{name}: no topologySpreadConstraints")
    return errors


# --- self-test --------------------------------------------------------------------------------


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind}/{name} not rendered")


def container(docs: list[Doc], name: str) -> Doc:
    return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def remove(docs: list[Doc], kind: str, name: str) -> None:
    docs.remove(find(docs, kind, name))


def config_map(docs: list[Doc], prefix: str) -> Doc:
    """The rendered ConfigMap whose (hashed) name starts with `prefix`."""
    for doc in by_kind(docs, "ConfigMap"):
        if doc["metadata"]["name"].startswith(prefix):
            return doc
    raise KeyError(f"ConfigMap/{prefix}* not rendered")


def edit_toml(docs: list[Doc], old: str, new: str) -> None:
    """Replaces `old` (which must be there) in the rendered telehealth.toml."""
    data = config_map(docs, "telehealth-config")["data"]
    if old not in data["telehealth.toml"]:
        raise KeyError(f"`{old}` not in telehealth.toml")
    data["telehealth.toml"] = data["telehealth.toml"].replace(old, new)


def set_setting(docs: list[Doc], name: str, value: str) -> None:
    config_map(docs, "telehealth-settings").setdefault("data", {})[name] = value


def policy_rule(docs: list[Doc], name: str, direction: str = "ingress") -> Doc:
    return find(docs, "NetworkPolicy", name)["spec"][direction][0]


# (overlay, what is broken, how, what the report must say)
MUTATIONS: list[tuple[str, str, Callable[[list[Doc]], None], str]] = [
    ("prod", "liveness probe removed", lambda d: container(d, "scheduling").pop("livenessProbe"),
     "Deployment/scheduling container scheduling: livenessProbe"),
    ("dev", "readiness probe of another part", lambda d: container(d, "wound")["readinessProbe"]["exec"].update(
        command=[BINARY, "health", "expertise"]), "Deployment/wound container wound: readinessProbe"),
    ("prod", "memory limit removed", lambda d: container(d, "gateway")["resources"]["limits"].pop("memory"),
     "Deployment/gateway container gateway: no memory in resources.limits"),
    ("dev", "cpu request removed", lambda d: container(d, "expertise")["resources"]["requests"].pop("cpu"),
     "no cpu in resources.requests"),
    ("prod", "writable root filesystem", lambda d: container(d, "wound")["securityContext"].update(
        readOnlyRootFilesystem=False), "readOnlyRootFilesystem must be true"),
    ("prod", "capabilities kept", lambda d: container(d, "signalling")["securityContext"].pop("capabilities"),
     "capabilities must drop ALL"),
    ("prod", "privilege escalation", lambda d: container(d, "gateway")["securityContext"].update(
        allowPrivilegeEscalation=True), "allowPrivilegeEscalation must be false"),
    ("prod", "seccomp unconfined", lambda d: [
        find(d, "Deployment", "scheduling")["spec"]["template"]["spec"]["securityContext"].update(
            seccompProfile={"type": "Unconfined"}),
        container(d, "scheduling")["securityContext"].update(seccompProfile={"type": "Unconfined"})],
     "seccompProfile must be RuntimeDefault"),
    ("prod", "grace period shorter than the drain", lambda d: find(d, "Deployment", "expertise")["spec"]["template"][
        "spec"].update(terminationGracePeriodSeconds=20), "terminationGracePeriodSeconds 20 must exceed"),
    ("dev", "drain raised by env above the grace period", lambda d: container(d, "signalling")["env"].append(
        {"name": "TELEHEALTH_SHUTDOWN__DRAIN_SECONDS", "value": "60"}), "shutdown.drain_seconds (60 s)"),
    ("prod", "default-deny policy removed", lambda d: remove(d, "NetworkPolicy", "default-deny"),
     "no default-deny NetworkPolicy"),
    ("prod", "scrape policy opened to every port", lambda d: find(d, "NetworkPolicy", METRICS_POLICY)["spec"][
        "ingress"][0].pop("ports"), "NetworkPolicy/allow-metrics-scrape: admits every port"),
    ("dev", "metrics port moved", lambda d: container(d, "auth")["ports"][-1].update(containerPort=9465),
     "Deployment/auth: its metrics port [9465]"),
    ("prod", "wound's ingress policy removed", lambda d: remove(d, "NetworkPolicy", "wound"),
     "Deployment/wound: no NetworkPolicy allows ingress"),
    ("dev", "gateway behind a ClusterIP", lambda d: find(d, "Service", "gateway")["spec"].update(type="ClusterIP"),
     "Service/gateway: must be of type LoadBalancer"),
    ("prod", "a part's PDB removed", lambda d: remove(d, "PodDisruptionBudget", "signalling"),
     "Deployment/signalling: no PodDisruptionBudget"),
    ("prod", "HPA with one replica", lambda d: find(d, "HorizontalPodAutoscaler", "wound")["spec"].update(
        minReplicas=1), "HorizontalPodAutoscaler/wound: minReplicas < 2"),
    ("prod", "HPA removed", lambda d: remove(d, "HorizontalPodAutoscaler", "gateway"),
     "Deployment/gateway: no HorizontalPodAutoscaler"),
    ("prod", "one replica pinned", lambda d: find(d, "Deployment", "scheduling")["spec"].update(replicas=1),
     "Deployment/scheduling: prod needs at least 2 replicas"),
    ("prod", "no topology spread", lambda d: find(d, "Deployment", "wound")["spec"]["template"]["spec"].pop(
        "topologySpreadConstraints"), "Deployment/wound: no topologySpreadConstraints"),
    ("prod", "reference to a ConfigMap not rendered", lambda d: container(d, "signalling")["envFrom"][0][
        "configMapRef"].update(name="telehealth-settings"), "Deployment/signalling: refers to ConfigMap telehealth-settings,"),
    ("dev", "a part missing", lambda d: remove(d, "Deployment", "expertise"), "Deployment/expertise: missing"),
    ("prod", "the directory missing", lambda d: remove(d, "Deployment", "directory"), "Deployment/directory: missing"),
    ("dev", "the auth service missing", lambda d: remove(d, "Deployment", "auth"), "Deployment/auth: missing"),
    ("prod", "a call blocked at the caller", lambda d: remove(d, "NetworkPolicy", "services-to-directory"),
     "NetworkPolicies do not let wound reach directory on 7105 (blocked by wound's egress)"),
    ("dev", "a call blocked at the callee", lambda d: policy_rule(d, "directory")["from"][0]["podSelector"][
        "matchExpressions"][0]["values"].remove("wound"),
     "NetworkPolicies do not let wound reach directory on 7105 (blocked by directory's ingress)"),
    ("prod", "sign-in cut off from the directory", lambda d: policy_rule(d, "directory")["from"][0]["podSelector"][
        "matchExpressions"][0]["values"].remove("auth"),
     "NetworkPolicies do not let auth reach directory on 7105 (blocked by directory's ingress)"),
    ("dev", "the gateway cut off from the auth service", lambda d: policy_rule(d, "auth")["from"][0][
        "podSelector"]["matchLabels"].update({COMPONENT: "wound"}),
     "NetworkPolicies do not let gateway reach auth on 7106 (blocked by auth's ingress)"),
    ("prod", "a call the code never makes allowed", lambda d: [
        policy_rule(d, "directory")["from"][0]["podSelector"]["matchExpressions"][0]["values"].append("signalling"),
        find(d, "NetworkPolicy", "services-to-directory")["spec"]["podSelector"]["matchExpressions"][0][
            "values"].append("signalling")],
     "NetworkPolicies let signalling reach directory on 7105, which it never calls"),
    ("prod", "a part reachable by one that never calls it", lambda d: [
        find(d, "NetworkPolicy", "allow-dns")["spec"].update(egress=[{}]),
        policy_rule(d, "expertise").pop("from")],
     "NetworkPolicies let scheduling reach expertise on 7102, which it never calls"),
    ("dev", "a service left off PostgreSQL", lambda d: find(d, "NetworkPolicy", "services-to-postgres")["spec"][
        "podSelector"]["matchExpressions"][0]["values"].remove("directory"),
     "NetworkPolicies do not let directory reach PostgreSQL on TCP 5432"),
    ("prod", "a part left off the collector", lambda d: find(d, "NetworkPolicy", "parts-to-collector")["spec"][
        "podSelector"]["matchExpressions"][0]["values"].remove("gateway"),
     "NetworkPolicies do not let gateway reach the OTLP collector on TCP 4317"),
    ("prod", "a service listening on loopback", lambda d: edit_toml(
        d, 'listen = "0.0.0.0:7105"', 'listen = "127.0.0.1:7105"'),
     "directory.listen `127.0.0.1:7105` must be on every interface"),
    ("dev", "a service's section missing", lambda d: edit_toml(d, "[directory]", "[directory_unused]"),
     "directory.listen: not set"),
    ("prod", "endpoints on another port (settings.env)", lambda d: set_setting(
        d, "TELEHEALTH_DIRECTORY__ENDPOINTS", '["https://directory:7106"]'),
     "directory.endpoints must be [https://directory:7105]"),
    ("dev", "container port other than the listen port", lambda d: container(d, "wound")["ports"][0].update(
        containerPort=7199), "wound.listen `0.0.0.0:7103` is not on the container's grpc port 7199"),
    ("prod", "a certificate naming another part", lambda d: find(d, "Certificate", "directory-internal")[
        "spec"].update(uris=[SPIFFE_PREFIX + "wound"]), "Certificate/directory-internal: uris must be"),
    ("dev", "a certificate without its Service name", lambda d: find(d, "Certificate", "directory-internal")[
        "spec"]["dnsNames"].remove("directory"), "Certificate/directory-internal: dnsNames must include `directory`"),
    ("prod", "a part mounting another's certificate", lambda d: next(
        v for v in find(d, "Deployment", "directory")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "internal-tls")["secret"].update(secretName="wound-internal-tls"),
     "Deployment/directory: its Certificate/wound-internal: uris must be [spiffe://telehealth.internal/directory]"),
]


# (what is broken, how, what the schema check must say); run on the prod overlay.
SCHEMA_MUTATIONS: list[tuple[str, Callable[[list[Doc]], None], str]] = [
    ("misspelt field", lambda d: container(d, "wound").update(readinesProbe={}),
     "Deployment/wound: spec/template/spec/containers/0"),
    ("wrong type", lambda d: find(d, "Deployment", "gateway")["spec"]["template"]["spec"].update(
        terminationGracePeriodSeconds="thirty"), "Deployment/gateway: spec/template/spec/terminationGracePeriodSeconds"),
    ("unknown custom resource", lambda d: d.append(
        {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}),
     "Widget/w: no schema"),
]


def self_test(rendered: dict[str, list[Doc]], version: str) -> list[str]:
    failures = []
    for what, mutate, expected in SCHEMA_MUTATIONS:
        docs = copy.deepcopy(rendered["prod"])
        mutate(docs)
        errors, _ = schema_errors(docs, version)
        if not any(expected in error for error in errors):
            failures.append(f"self-test: schema, {what}: expected `{expected}`, reported {errors}")
    for overlay, docs in rendered.items():
        errors = invariant_errors(docs, overlay)
        if errors:
            failures.append(f"self-test: the {overlay} overlay as rendered must pass, got: {errors}")
    for overlay, what, mutate, expected in MUTATIONS:
        docs = copy.deepcopy(rendered[overlay])
        mutate(docs)
        errors = invariant_errors(docs, overlay)
        if not any(expected in error for error in errors):
            failures.append(f"self-test: {overlay}, {what}: expected `{expected}`, reported {errors}")
    if not failures:
        count = len(MUTATIONS) + len(SCHEMA_MUTATIONS)
        print(f"self-test: {count} broken manifests, each reported")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    schema = sub.add_parser("schema")
    schema.add_argument("--kubernetes-version", required=True)
    schema.add_argument("rendered")
    invariants = sub.add_parser("invariants")
    invariants.add_argument("--overlay", choices=["dev", "prod"], required=True)
    invariants.add_argument("rendered")
    test = sub.add_parser("self-test")
    test.add_argument("--kubernetes-version", required=True)
    test.add_argument("dev")
    test.add_argument("prod")
    args = parser.parse_args()

    if args.command == "schema":
        docs = load(args.rendered)
        errors, skipped = schema_errors(docs, args.kubernetes_version)
        checked = len(docs) - len(skipped)
        print(
            f"{args.rendered}: {checked} objects valid against Kubernetes {args.kubernetes_version}"
            if not errors
            else f"{args.rendered}: {len(errors)} schema errors"
        )
        print(f"  skipped (custom resources, no schema): {', '.join(sorted(skipped)) or 'none'}")
    elif args.command == "invariants":
        errors = invariant_errors(load(args.rendered), args.overlay)
        if not errors:
            print(f"{args.rendered}: invariants of the {args.overlay} overlay hold")
    else:
        errors = self_test({"dev": load(args.dev), "prod": load(args.prod)}, args.kubernetes_version)
    for error in errors:
        print(f"FAIL {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
