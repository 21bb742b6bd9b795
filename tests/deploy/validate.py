"""Validates deploy/k8s: the Deployment and Service against Kubernetes'
own schemas (the `kubernetes-validate` package, strict: unknown fields
rejected), the InferencePool against deploy/inferencepool.schema.json (the
Gateway API Inference Extension's v1 fields); and checks that the pieces
fit: the pool and the Service select the Deployment's pods, on the port
the container serves, with probes on /health. Prints "deploy: ok".

    python3 tests/deploy/validate.py REPO_ROOT
"""
import json
import pathlib
import subprocess
import sys

import jsonschema
import yaml

root = pathlib.Path(sys.argv[1])
k8s = root / "deploy/k8s"
docs = {}
for f in sorted(k8s.glob("*.yaml")):
    for d in yaml.safe_load_all(f.read_text()):
        docs[d["kind"]] = d
core = [str(k8s / "deployment.yaml"), str(k8s / "service.yaml")]
r = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.33.0", *core],
                   capture_output=True, text=True)
assert r.returncode == 0, r.stdout + r.stderr
schema = json.loads((root / "deploy/inferencepool.schema.json").read_text())
jsonschema.validate(docs["InferencePool"], schema)
# The schema does refuse what it should.
bad = json.loads(json.dumps(docs["InferencePool"]))
bad["spec"]["targetPortNumber"] = 8000
try:
    jsonschema.validate(bad, schema)
    raise AssertionError("the schema took an old field")
except jsonschema.ValidationError:
    pass
dep, svc, pool = docs["Deployment"], docs["Service"], docs["InferencePool"]
labels = dep["spec"]["template"]["metadata"]["labels"]
c = dep["spec"]["template"]["spec"]["containers"][0]
port = c["ports"][0]["containerPort"]
assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
assert svc["spec"]["selector"].items() <= labels.items()
assert pool["spec"]["targetPorts"][0]["number"] == port
for probe in ["readinessProbe", "livenessProbe", "startupProbe"]:
    assert c[probe]["httpGet"]["path"] == "/health", probe
print("deploy: ok")
