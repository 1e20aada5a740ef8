// Added to sigs.k8s.io/kube-network-policies' pkg/networkpolicy when Rebound builds it
// (kindnode.gobuild.network_policies_binary); the only change to its source.

package networkpolicy

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// nfqueueTarget hands a packet to userspace queue `num` like nft's `queue` statement, but
// through the xtables NFQUEUE target (revision 3) run by nft_compat: kernels built without
// CONFIG_NFT_QUEUE (the `queue` expression) but with CONFIG_NETFILTER_XT_TARGET_NFQUEUE and
// CONFIG_NFT_COMPAT refuse the first with ENOENT and accept the second. `bypass` lets packets
// through when nobody listens on the queue (nft's `queue flags bypass`).
func nfqueueTarget(num uint16, bypass bool) expr.Any {
	// struct xt_NFQ_info_v3 { __u16 queuenum; __u16 queues_total; __u16 flags; },
	// padded to 8 bytes as the kernel's XT_ALIGN expects; host byte order.
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], 0x01) // NFQ_FLAG_BYPASS
	}
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}
