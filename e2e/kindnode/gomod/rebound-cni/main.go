// Command rebound-cni is the pod network of the kind nodes Rebound builds: what kindnetd does
// in kind's own node images (kindnetd is not published as a Go module), minus NetworkPolicy,
// which kube-network-policies enforces beside it.
//
// On its node it writes the CNI configuration for the node's podCIDR (ptp + host-local +
// portmap, the plugins kind's images ship), routes every other node's podCIDR via that node's
// InternalIP, and masquerades traffic from the pod network to anything outside it. It runs as
// a hostNetwork DaemonSet and polls the Node list, which is tiny in a kind cluster.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/knftables"
)

const (
	confPath  = "/etc/cni/net.d/10-rebound.conflist"
	tableName = "rebound-cni"
	interval  = 3 * time.Second
)

// Conflist is this node's CNI configuration: ptp veths with addresses from podCIDR.
func Conflist(podCIDR string, mtu int) ([]byte, error) {
	if _, _, err := net.ParseCIDR(podCIDR); err != nil {
		return nil, fmt.Errorf("podCIDR %q: %w", podCIDR, err)
	}
	config := map[string]any{
		"cniVersion": "0.3.1",
		"name":       "rebound",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    mtu,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
					"ranges":  []any{[]any{map[string]any{"subnet": podCIDR}}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]any{"portMappings": true}},
		},
	}
	return json.MarshalIndent(config, "", "  ")
}

// Routes maps each other node's IPv4 podCIDR to its InternalIP: where to send its pods' traffic.
func Routes(nodes []v1.Node, self string) map[string]string {
	routes := map[string]string{}
	for _, node := range nodes {
		if node.Name == self || node.Spec.PodCIDR == "" {
			continue
		}
		_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
		if err != nil || cidr.IP.To4() == nil {
			continue
		}
		for _, address := range node.Status.Addresses {
			ip := net.ParseIP(address.Address)
			if address.Type == v1.NodeInternalIP && ip != nil && ip.To4() != nil {
				routes[cidr.String()] = ip.String()
				break
			}
		}
	}
	return routes
}

// MasqueradeRule is the nft rule that hides pod addresses from destinations outside the pod network.
func MasqueradeRule(podSubnet string) string {
	return knftables.Concat("ip saddr", podSubnet, "ip daddr !=", podSubnet, "masquerade")
}

func writeConflist(podCIDR string, mtu int) (bool, error) {
	data, err := Conflist(podCIDR, mtu)
	if err != nil {
		return false, err
	}
	if current, err := os.ReadFile(confPath); err == nil && string(current) == string(data) {
		return false, nil
	}
	partial := filepath.Join(filepath.Dir(confPath), ".10-rebound.conflist.partial")
	if err := os.WriteFile(partial, data, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(partial, confPath)
}

func masquerade(ctx context.Context, podSubnet string) error {
	nft, err := knftables.New(knftables.IPv4Family, tableName)
	if err != nil {
		return err
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{})
	tx.Add(&knftables.Chain{
		Name:     "postrouting",
		Type:     knftables.PtrTo(knftables.NATType),
		Hook:     knftables.PtrTo(knftables.PostroutingHook),
		Priority: knftables.PtrTo(knftables.SNATPriority),
	})
	tx.Flush(&knftables.Chain{Name: "postrouting"})
	tx.Add(&knftables.Rule{Chain: "postrouting", Rule: MasqueradeRule(podSubnet)})
	return nft.Run(ctx, tx)
}

func defaultMTU() int {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err == nil {
		for _, route := range routes {
			if route.Dst == nil || route.Dst.String() == "0.0.0.0/0" {
				if link, err := netlink.LinkByIndex(route.LinkIndex); err == nil {
					return link.Attrs().MTU
				}
			}
		}
	}
	return 1500
}

func syncRoutes(wanted, installed map[string]string) {
	for cidr, gateway := range wanted {
		if installed[cidr] == gateway {
			continue
		}
		_, dst, _ := net.ParseCIDR(cidr)
		if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: net.ParseIP(gateway)}); err != nil {
			fmt.Fprintf(os.Stderr, "route %s via %s: %v\n", cidr, gateway, err)
			continue
		}
		fmt.Printf("route %s via %s\n", cidr, gateway)
		installed[cidr] = gateway
	}
	for cidr, gateway := range installed {
		if _, ok := wanted[cidr]; ok {
			continue
		}
		_, dst, _ := net.ParseCIDR(cidr)
		_ = netlink.RouteDel(&netlink.Route{Dst: dst, Gw: net.ParseIP(gateway)})
		fmt.Printf("route %s via %s removed\n", cidr, gateway)
		delete(installed, cidr)
	}
}

func run(ctx context.Context) error {
	self, podSubnet := os.Getenv("NODE_NAME"), os.Getenv("POD_SUBNET")
	if self == "" || podSubnet == "" {
		return fmt.Errorf("NODE_NAME and POD_SUBNET must be set")
	}
	if err := masquerade(ctx, podSubnet); err != nil {
		return fmt.Errorf("masquerade rule: %w", err)
	}
	config, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	mtu := defaultMTU()
	installed := map[string]string{}
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			fmt.Fprintf(os.Stderr, "list nodes: %v\n", err)
		} else {
			for _, node := range nodes.Items {
				if node.Name == self && node.Spec.PodCIDR != "" {
					if changed, err := writeConflist(node.Spec.PodCIDR, mtu); err != nil {
						fmt.Fprintf(os.Stderr, "CNI config: %v\n", err)
					} else if changed {
						fmt.Printf("wrote %s for %s (mtu %d)\n", confPath, node.Spec.PodCIDR, mtu)
					}
				}
			}
			syncRoutes(Routes(nodes.Items, self), installed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "rebound-cni: %v\n", err)
		os.Exit(1)
	}
}
