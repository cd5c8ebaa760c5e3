"""Deployment files for a model repository: container images and a compose file (:mod:`.docker`),
Kubernetes and KServe manifests (:mod:`.kubernetes`). Both describe the same servers
(:mod:`.servers`), so ports, health endpoints and images are written once."""
