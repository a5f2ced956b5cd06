#!/usr/bin/env python3
"""Semantic checks on rendered Kubernetes manifests (helm template output).

These are checks a real API server / controller makes, or that bite at run
time, and that the OpenAPI schemas used by kubernetes-validate miss:

  * workload selectors match their pod template labels
  * every Service selector matches the pod labels of some workload
  * named Service targetPorts and named probe ports exist in the container
  * requests == limits for extended resources (nvidia.com/gpu)
  * label / annotation key and value syntax
  * port numbers in 1..65535, unique container port names
  * worker terminationGracePeriodSeconds > SIGSWEEP_DRAIN_TIMEOUT
  * etcd StatefulSet replicas odd, PDB maxUnavailable keeps quorum
  * duplicate env var names, duplicate (kind, name) objects
  * with a token, the coordinator's ServiceMonitor sends it (the secret
    and key the coordinator reads it from)
  * with a token, the bundled etcd's client port admits only chosen peers
    (a NetworkPolicy selects its pods), so the state is not open around it

Usage: semantic_checks.py FILE [FILE...]   (exit 1 on any finding)
Stdlib + PyYAML only.
"""
from __future__ import annotations

import re
import sys
from typing import Any, Iterable

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
EXTENDED_RESOURCE = re.compile(r"^[a-z0-9.-]+/[a-z0-9.-]+$")


class Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, obj: dict, msg: str) -> None:
        self.errors.append(f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {msg}")

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def pod_spec(obj: dict) -> dict | None:
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        if kind == "Pod":
            return spec
        if kind in WORKLOAD_KINDS:
            return ((spec.get("template") or {}).get("spec")) or {}
        if kind == "CronJob":
            return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        return None

    @staticmethod
    def pod_labels(obj: dict) -> dict:
        if obj.get("kind") == "Pod":
            return (obj.get("metadata") or {}).get("labels") or {}
        return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}

    @staticmethod
    def containers(pod: dict) -> Iterable[dict]:
        for key in ("initContainers", "containers"):
            yield from pod.get(key) or []

    def check_labels(self, obj: dict, labels: dict | None, where: str) -> None:
        for key, value in (labels or {}).items():
            key = str(key)
            prefix, _, name = key.rpartition("/")
            if prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
                self.err(obj, f"{where}: invalid label key prefix {key!r}")
            if not LABEL_NAME.match(name):
                self.err(obj, f"{where}: invalid label key {key!r}")
            if not isinstance(value, str):
                self.err(obj, f"{where}: label {key!r} value must be a string, got {value!r}")
            elif not LABEL_VALUE.match(value):
                self.err(obj, f"{where}: invalid label value {key}={value!r}")

    def check_annotations(self, obj: dict, ann: dict | None, where: str) -> None:
        for key, value in (ann or {}).items():
            prefix, _, name = str(key).rpartition("/")
            if (prefix and not DNS_SUBDOMAIN.match(prefix)) or not LABEL_NAME.match(name):
                self.err(obj, f"{where}: invalid annotation key {key!r}")
            if not isinstance(value, str):
                self.err(obj, f"{where}: annotation {key!r} value must be a string, got {value!r}")

    @staticmethod
    def selector_matches(selector: dict, labels: dict) -> bool:
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and labels.get(key) in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True

    def check_port(self, obj: dict, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.err(obj, f"{where}: port {value!r} not in 1..65535")

    # -- per-object checks ---------------------------------------------------
    def check_object(self, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        self.check_labels(obj, meta.get("labels"), "metadata.labels")
        self.check_annotations(obj, meta.get("annotations"), "metadata.annotations")
        kind = obj.get("kind")
        spec = obj.get("spec") or {}

        if kind in WORKLOAD_KINDS:
            selector = spec.get("selector") or {}
            labels = self.pod_labels(obj)
            self.check_labels(obj, labels, "spec.template.metadata.labels")
            self.check_annotations(obj, ((spec.get("template") or {}).get("metadata") or {}).get("annotations"),
                                   "spec.template.metadata.annotations")
            if kind != "Job" and not (selector.get("matchLabels") or selector.get("matchExpressions")):
                self.err(obj, "empty spec.selector")
            elif selector and not self.selector_matches(selector, labels):
                self.err(obj, f"spec.selector {selector} does not match template labels {labels}")

        pod = self.pod_spec(obj)
        if pod is not None:
            self.check_pod(obj, pod)

        if kind == "Service":
            for p in spec.get("ports") or []:
                self.check_port(obj, p.get("port"), f"port {p.get('name')}")
                tp = p.get("targetPort")
                if isinstance(tp, int):
                    self.check_port(obj, tp, f"targetPort of {p.get('name')}")
            names = [p.get("name") for p in spec.get("ports") or []]
            if len(names) > 1 and (None in names or len(set(names)) != len(names)):
                self.err(obj, "multi-port Service needs unique port names")

        if kind == "PodDisruptionBudget":
            sel = spec.get("selector") or {}
            if not (sel.get("matchLabels") or sel.get("matchExpressions")):
                self.err(obj, "PDB with empty selector")

    def check_pod(self, obj: dict, pod: dict) -> None:
        volumes = {v.get("name") for v in pod.get("volumes") or []}
        claim_templates = {
            (c.get("metadata") or {}).get("name") for c in (obj.get("spec") or {}).get("volumeClaimTemplates") or []
        }
        for c in self.containers(pod):
            cname = c.get("name")
            ports = c.get("ports") or []
            pnames = [p.get("name") for p in ports if p.get("name")]
            if len(pnames) != len(set(pnames)):
                self.err(obj, f"container {cname}: duplicate port names {pnames}")
            for p in ports:
                self.check_port(obj, p.get("containerPort"), f"container {cname} containerPort")
                if p.get("name") and (len(p["name"]) > 15 or not PORT_NAME.match(p["name"])):
                    self.err(obj, f"container {cname}: invalid port name {p['name']!r} (IANA_SVC_NAME, <=15)")
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(probe_name) or {}
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    h = probe.get(handler)
                    if not h:
                        continue
                    port = h.get("port")
                    if isinstance(port, str):
                        if handler == "grpc":
                            self.err(obj, f"container {cname} {probe_name}: grpc probe port must be a number")
                        elif port not in pnames:
                            self.err(obj, f"container {cname} {probe_name}: named port {port!r} not in {pnames}")
                    else:
                        self.check_port(obj, port, f"container {cname} {probe_name}")
            # extended resources: requests must equal limits
            res = c.get("resources") or {}
            limits, requests = res.get("limits") or {}, res.get("requests") or {}
            for name in set(limits) | set(requests):
                if EXTENDED_RESOURCE.match(name) and not name.startswith("kubernetes.io/"):
                    lv, rv = limits.get(name), requests.get(name)
                    if lv is None:
                        self.err(obj, f"container {cname}: {name} must be set in limits")
                    elif rv is not None and str(lv) != str(rv):
                        self.err(obj, f"container {cname}: {name} requests ({rv}) != limits ({lv})")
            env_names = [e.get("name") for e in c.get("env") or []]
            dups = {n for n in env_names if env_names.count(n) > 1}
            if dups:
                self.err(obj, f"container {cname}: duplicate env vars {sorted(dups)}")
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in volumes | claim_templates:
                    self.err(obj, f"container {cname}: volumeMount {m.get('name')!r} has no volume")

    @staticmethod
    def configmaps(objs: list[dict]) -> dict[str, dict]:
        return {o["metadata"]["name"]: o.get("data") or {} for o in objs if o.get("kind") == "ConfigMap"}

    @staticmethod
    def container_env(c: dict, configmaps: dict[str, dict]) -> dict[str, str]:
        """A container's plain environment: its envFrom ConfigMaps, then env values."""
        env: dict[str, str] = {}
        for ef in c.get("envFrom") or []:
            env.update(configmaps.get((ef.get("configMapRef") or {}).get("name"), {}))
        env.update({e["name"]: e.get("value") for e in c.get("env") or [] if "value" in e})
        return env

    # -- cross-object checks -------------------------------------------------
    def check_services(self, objs: list[dict]) -> None:
        workloads = [o for o in objs if o.get("kind") in WORKLOAD_KINDS or o.get("kind") == "Pod"]
        for svc in (o for o in objs if o.get("kind") == "Service"):
            spec = svc.get("spec") or {}
            sel = spec.get("selector")
            if not sel or spec.get("type") == "ExternalName":
                continue
            matches = [w for w in workloads
                       if w.get("kind") != "Pod" or not (w.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook")]
            matches = [w for w in matches if all(self.pod_labels(w).get(k) == v for k, v in sel.items())]
            if not matches:
                self.err(svc, f"selector {sel} matches no workload pod labels")
                continue
            for p in spec.get("ports") or []:
                tp = p.get("targetPort")
                if isinstance(tp, str):
                    for w in matches:
                        pod = self.pod_spec(w) or {}
                        names = {cp.get("name") for c in self.containers(pod) for cp in c.get("ports") or []}
                        if tp not in names:
                            self.err(svc, f"targetPort {tp!r} not a container port of {w['kind']}/{w['metadata']['name']}")

    def check_statefulset_services(self, objs: list[dict]) -> None:
        services = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "Service"}
        for sts in (o for o in objs if o.get("kind") == "StatefulSet"):
            name = (sts.get("spec") or {}).get("serviceName")
            if name and name not in services:
                self.err(sts, f"serviceName {name!r} is not rendered")
            elif name and (services[name].get("spec") or {}).get("clusterIP") != "None":
                self.err(sts, f"serviceName {name!r} is not a headless Service")

    def check_workers_and_etcd(self, objs: list[dict]) -> None:
        configmaps = self.configmaps(objs)
        for obj in objs:
            if obj.get("kind") not in WORKLOAD_KINDS:
                continue
            component = self.pod_labels(obj).get("app.kubernetes.io/component")
            pod = self.pod_spec(obj) or {}
            if component == "worker":
                env: dict[str, str] = {}
                for c in self.containers(pod):
                    env.update(self.container_env(c, configmaps))
                drain = env.get("SIGSWEEP_DRAIN_TIMEOUT")
                if drain is None:
                    self.err(obj, "worker has no SIGSWEEP_DRAIN_TIMEOUT")
                    continue
                m = DURATION.match(str(drain))
                if not m or not drain:
                    self.err(obj, f"unparseable SIGSWEEP_DRAIN_TIMEOUT {drain!r}")
                    continue
                h, mi, s = (int(x or 0) for x in m.groups())
                seconds = h * 3600 + mi * 60 + s
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace <= seconds:
                    self.err(obj, f"terminationGracePeriodSeconds {grace} <= drain timeout {drain} ({seconds}s)")
                backend = env.get("SIGSWEEP_BACKEND")
                gpu = any("nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
                          for c in self.containers(pod))
                if backend == "cuda" and not gpu:
                    self.err(obj, "cuda worker without nvidia.com/gpu limits")
                if backend == "cpu" and gpu:
                    self.err(obj, "cpu worker requests nvidia.com/gpu")
            if component == "etcd" and obj.get("kind") == "StatefulSet":
                replicas = (obj.get("spec") or {}).get("replicas", 1)
                if replicas % 2 == 0:
                    self.err(obj, f"etcd replicas {replicas} must be odd")
                for pdb in (o for o in objs if o.get("kind") == "PodDisruptionBudget"):
                    sel = (pdb.get("spec") or {}).get("selector") or {}
                    if self.selector_matches(sel, self.pod_labels(obj)):
                        mu = (pdb.get("spec") or {}).get("maxUnavailable")
                        if isinstance(mu, int) and mu > (replicas - 1) // 2:
                            self.err(pdb, f"maxUnavailable {mu} breaks etcd quorum of {replicas} members")

    def coordinator_token_files(self, objs: list[dict]):
        """(workload, pod spec, container, token file path) of every
        coordinator container that reads a token (SIGSWEEP_TOKEN_FILE)."""
        configmaps = self.configmaps(objs)
        for obj in objs:
            if obj.get("kind") not in WORKLOAD_KINDS:
                continue
            if self.pod_labels(obj).get("app.kubernetes.io/component") != "coordinator":
                continue
            pod = self.pod_spec(obj) or {}
            for c in self.containers(pod):
                token_file = self.container_env(c, configmaps).get("SIGSWEEP_TOKEN_FILE")
                if token_file:
                    yield obj, pod, c, token_file

    def check_scrape_token(self, objs: list[dict]) -> None:
        """A coordinator with a token refuses scrapes without it: every
        ServiceMonitor selecting its Service must send that secret's key."""
        for obj, pod, c, token_file in self.coordinator_token_files(objs):
            labels = self.pod_labels(obj)
            # The secret (and key) mounted where the token file is read.
            mounts = {m.get("name"): m.get("mountPath", "") for m in c.get("volumeMounts") or []}
            wanted = None
            for v in pod.get("volumes") or []:
                path = mounts.get(v.get("name"))
                secret = v.get("secret")
                if not path or not secret or not token_file.startswith(path.rstrip("/") + "/"):
                    continue
                rel = token_file[len(path.rstrip("/")) + 1:]
                key = next((i.get("key") for i in secret.get("items") or [] if i.get("path") == rel), rel)
                wanted = (secret.get("secretName"), key)
            if wanted is None:
                self.err(obj, f"SIGSWEEP_TOKEN_FILE {token_file} is not in a mounted secret")
                continue
            for svc in (o for o in objs if o.get("kind") == "Service"):
                sel = (svc.get("spec") or {}).get("selector") or {}
                if not sel or not all(labels.get(k) == v for k, v in sel.items()):
                    continue
                for sm in (o for o in objs if o.get("kind") == "ServiceMonitor"):
                    sm_sel = (sm.get("spec") or {}).get("selector") or {}
                    if not self.selector_matches(sm_sel, (svc.get("metadata") or {}).get("labels") or {}):
                        continue
                    for ep in (sm.get("spec") or {}).get("endpoints") or []:
                        cred = (ep.get("authorization") or {}).get("credentials") or {}
                        if (cred.get("name"), cred.get("key")) != wanted:
                            self.err(sm, f"endpoint {ep.get('port')!r} sends {(cred.get('name'), cred.get('key'))}, "
                                         f"the coordinator's token is {wanted}: its scrapes are refused")

    def check_etcd_guarded(self, objs: list[dict]) -> None:
        """With a token on the coordinator, the bundled etcd (which holds
        everything the token guards) must admit on its client port only the
        peers a NetworkPolicy names."""
        if next(self.coordinator_token_files(objs), None) is None:
            return
        policies = [o for o in objs if o.get("kind") == "NetworkPolicy"]
        for sts in (o for o in objs if o.get("kind") == "StatefulSet"):
            labels = self.pod_labels(sts)
            if labels.get("app.kubernetes.io/component") != "etcd":
                continue
            guarded = False
            for np in policies:
                spec = np.get("spec") or {}
                if not self.selector_matches(spec.get("podSelector") or {}, labels):
                    continue
                rules = [r for r in spec.get("ingress") or []
                         if any(p.get("port") in ("client", 2379) for p in r.get("ports") or [])]
                open_rule = any(not r.get("from") for r in rules)
                if "Ingress" in (spec.get("policyTypes") or []) and not open_rule:
                    guarded = True
            if not guarded:
                self.err(sts, "the coordinator requires a token, but no NetworkPolicy limits who reaches etcd's client port: the state is open around the token")

    def check_unique(self, objs: list[dict]) -> None:
        seen = set()
        for o in objs:
            key = (o.get("apiVersion"), o.get("kind"), (o.get("metadata") or {}).get("namespace"),
                   (o.get("metadata") or {}).get("name"))
            if key in seen:
                self.err(o, "rendered twice")
            seen.add(key)

    def run(self, objs: list[dict]) -> None:
        for o in objs:
            self.check_object(o)
        self.check_services(objs)
        self.check_statefulset_services(objs)
        self.check_workers_and_etcd(objs)
        self.check_scrape_token(objs)
        self.check_etcd_guarded(objs)
        self.check_unique(objs)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    total = 0
    for path in argv:
        with open(path, encoding="utf-8") as fh:
            objs = [d for d in yaml.safe_load_all(fh) if isinstance(d, dict) and d.get("kind")]
        checker = Checker()
        checker.run(objs)
        for e in checker.errors:
            print(f"  {path}: {e}")
        total += len(checker.errors)
        if not objs:
            print(f"  {path}: no objects rendered")
            total += 1
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
