"""kdns: Kubernetes-style service discovery DNS, served from an embedded registry."""

__version__ = "0.1.0"
