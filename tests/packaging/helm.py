"""Helm's own library (helm-sdkpy, libhelm) for tests/packaging.rs: lint, install, uninstall.

Usage (KUBECONFIG from the environment):
  helm.py lint CHART
  helm.py install RELEASE CHART NAMESPACE VALUES_JSON   -> {"manifest", "notes", "status"}
  helm.py uninstall RELEASE NAMESPACE

helm-sdkpy exposes no `helm template`; the rendered objects are taken from an install's
release manifest instead (Install(..., wait=False): there is no kubelet for the operator pod).
"""

import asyncio
import json
import os
import sys

import helm_sdkpy as helm


def config(namespace: str) -> helm.Configuration:
    return helm.Configuration(namespace=namespace, kubeconfig=os.environ.get("KUBECONFIG"))


def main(argv: list[str]) -> int:
    cmd = argv[0]
    if cmd == "lint":
        result = helm.Lint(config("default")).run(argv[1])
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        print(json.dumps(result, default=str))
        return 0
    if cmd == "install":
        release, chart, namespace, values = argv[1], argv[2], argv[3], json.loads(argv[4])
        result = asyncio.run(
            helm.Install(config(namespace)).run(
                # take_ownership: a cluster-scoped object left by a test run that died is
                # adopted instead of failing the install.
                release, chart, values=values or None, wait=False, timeout=120,
                take_ownership=True,
            )
        )
        info = result.get("info", {})
        print(json.dumps({"manifest": result.get("manifest", ""), "notes": info.get("notes", ""),
                          "status": info.get("status", "")}))
        return 0
    if cmd == "uninstall":
        result = asyncio.run(helm.Uninstall(config(argv[2])).run(argv[1], wait=False, timeout=120))
        print(json.dumps({"status": result.get("release", {}).get("info", {}).get("status", "")}))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
