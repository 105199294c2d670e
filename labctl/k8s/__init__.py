"""labctl's Kubernetes side: manifests for a lab run (no cluster needed to render them), the
static kustomize dirs generated from them, and the run on a cluster.

Only `labctl.k8s.cluster` imports the `kubernetes` client, and only when a run starts.
"""
