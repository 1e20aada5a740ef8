"""kind built here: the node image, the Docker engine it needs, and the cluster `make e2e` uses.

No node image, registry or release download is reachable, so everything a kind cluster runs
is built from the Go module proxy and Debian: kubeadm, kubelet, kube-proxy and kubectl from
the same build module as the local cluster's control plane (`localcluster.build`), the kind
CLI, crictl, CoreDNS, kube-network-policies and a small pod-network daemon; every image
kubeadm and the nodes ask for is preloaded under its exact name, so nothing is ever pulled.
"""
