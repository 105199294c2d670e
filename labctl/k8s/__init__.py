"""labctl's Kubernetes side: manifests for a lab run (manifests.py, extra.py; no cluster needed
to render them), the static kustomize dirs generated from them (static.py), and the run on a
cluster: cluster.py strings together lifecycle.py (preflight, create, roll back, clean),
waits.py, backend.py (a task is a Job) and collect.py (results back), over api.py.

Only api.py imports the `kubernetes` client, and only when a run starts.
"""
