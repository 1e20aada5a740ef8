// Command coredns is CoreDNS (github.com/coredns/coredns, at the version kubeadm names) with
// the plugins a kubeadm cluster's Corefile uses, plus log: upstream's main imports every
// plugin (cloud DNS providers, tracing, ...), which makes its build several times longer.
package main

import (
	"github.com/coredns/coredns/coremain"

	// kubeadm's Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go), in its order.
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	// Query logging, for debugging a cluster's DNS.
	_ "github.com/coredns/coredns/plugin/log"
)

func main() {
	coremain.Run()
}
