package main

import (
	"encoding/json"
	"reflect"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, podCIDR string, addresses ...v1.NodeAddress) v1.Node {
	return v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeSpec{PodCIDR: podCIDR},
		Status:     v1.NodeStatus{Addresses: addresses},
	}
}

func TestRoutesGoToEveryOtherNodesInternalIP(t *testing.T) {
	internal := func(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip} }
	nodes := []v1.Node{
		node("cp", "10.244.0.0/24", internal("172.18.0.3")),
		node("worker", "10.244.1.0/24", v1.NodeAddress{Type: v1.NodeHostName, Address: "worker"}, internal("172.18.0.2")),
		node("new", ""),                                    // no podCIDR yet
		node("v6", "fd00:10:244::/64", internal("fc00::2")), // not IPv4
		node("broken", "not-a-cidr", internal("172.18.0.9")),
	}
	got := Routes(nodes, "cp")
	want := map[string]string{"10.244.1.0/24": "172.18.0.2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Routes = %v, want %v", got, want)
	}
}

func TestConflistUsesTheNodesPodCIDRWithoutPtpMasquerade(t *testing.T) {
	data, err := Conflist("10.244.1.0/24", 1450)
	if err != nil {
		t.Fatal(err)
	}
	var config struct {
		Plugins []struct {
			Type   string `json:"type"`
			IPMasq bool   `json:"ipMasq"`
			MTU    int    `json:"mtu"`
			IPAM   struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &config); err != nil {
		t.Fatal(err)
	}
	ptp := config.Plugins[0]
	if ptp.Type != "ptp" || ptp.IPMasq || ptp.MTU != 1450 || ptp.IPAM.Ranges[0][0].Subnet != "10.244.1.0/24" {
		t.Fatalf("unexpected ptp plugin: %s", data)
	}
	if config.Plugins[1].Type != "portmap" {
		t.Fatalf("no portmap plugin: %s", data)
	}
	if _, err := Conflist("10.244.1.0", 1500); err == nil {
		t.Fatal("a podCIDR without a prefix length was accepted")
	}
}

func TestMasqueradeKeepsPodToPodTrafficUnchanged(t *testing.T) {
	want := "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade"
	if got := MasqueradeRule("10.244.0.0/16"); got != want {
		t.Fatalf("MasqueradeRule = %q, want %q", got, want)
	}
}
