#!/usr/bin/env python3
"""Split rendered manifests into built-in kinds and CRD instances.

  split_crds.py SCHEMA_DIR IN.yaml OUT_BUILTIN.yaml

Writes the documents whose apiVersion group is a built-in Kubernetes group to
OUT_BUILTIN.yaml (for kubernetes-validate) and validates every other
document against SCHEMA_DIR/<group>_<version>_<Kind>.json with jsonschema.
A CRD kind without a schema file is a failure. Exit 1 on any failure.
"""
import json
import os
import sys

import jsonschema
import yaml

# Groups that are part of Kubernetes itself (covered by kubernetes-validate).
BUILTIN_GROUPS = {
    "", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "scheduling.k8s.io", "node.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "admissionregistration.k8s.io", "apiextensions.k8s.io", "certificates.k8s.io", "events.k8s.io",
    "flowcontrol.apiserver.k8s.io", "resource.k8s.io",
}


def main(schema_dir: str, src: str, dst: str) -> int:
    with open(src, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if isinstance(d, dict) and d.get("kind")]
    builtin, failures, checked = [], 0, 0
    for doc in docs:
        api = doc.get("apiVersion", "")
        group, _, version = api.rpartition("/")
        if group in BUILTIN_GROUPS:
            builtin.append(doc)
            continue
        name = f"{group}_{version}_{doc['kind']}.json"
        path = os.path.join(schema_dir, name)
        ident = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
        if not os.path.exists(path):
            print(f"  {src}: {ident}: no schema {name} for CRD kind")
            failures += 1
            continue
        with open(path, encoding="utf-8") as fh:
            schema = json.load(fh)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
        for e in errors:
            print(f"  {src}: {ident}: {'/'.join(map(str, e.path))}: {e.message}")
        failures += len(errors)
        checked += 1
    with open(dst, "w", encoding="utf-8") as fh:
        yaml.safe_dump_all(builtin, fh, sort_keys=False)
    if checked:
        print(f"  {os.path.basename(src)}: {checked} CRD object(s) validated against .ci/helm/crd-schemas")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
