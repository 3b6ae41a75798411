"""Tests of deploy/: the compose file, the Kubernetes manifests and the Dockerfile."""
