"""A real Kubernetes control plane on this machine, built from the Go module proxy, plus a
node that runs pods as local processes. Test infrastructure for Rebound's real-API-server
tier (`make cluster-up`, `make e2e-local`, `make cluster-down`); see README "Local cluster".
"""
