# kind's base image (sigs.k8s.io/kind v0.33.0, images/base/Dockerfile), on a debootstrapped
# Debian root filesystem that already holds its packages plus Debian's containerd, runc and
# CNI plugins (kind builds those three from source; `kindnode.rootfs.NODE`). The build
# context holds kind's `images/base/files` tree (from the kind module) as `kind/`.
ARG ROOTFS
FROM ${ROOTFS}
COPY kind/usr/local/bin/ /usr/local/bin/
COPY kind/kind/ /kind/
COPY kind/LICENSES/ /LICENSES/
COPY kind/etc/ /etc/
COPY default-cni.yaml /kind/manifests/default-cni.yaml
# kind's own clean-up and unit setup, as its Dockerfile does; then what differs here:
# - kind's units start /usr/local/bin/containerd and look in /opt/cni/bin: Debian installs
#   /usr/bin/containerd and /usr/lib/cni;
# - restrict_oom_score_adj: without CAP_SYS_RESOURCE (some hosts' bounding sets) runc cannot
#   give a sandbox a lower oom_score_adj than containerd's own, and every pod fails.
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* \
    && chmod 644 /kind/manifests/default-cni.yaml \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -sf /usr/lib/systemd/systemd /sbin/init \
    && systemctl enable kubelet.service \
    && systemctl enable containerd.service \
    && systemctl enable undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests \
    && ln -s /usr/bin/containerd /usr/local/bin/containerd \
    && mkdir -p /opt/cni && rm -rf /opt/cni/bin && ln -s /usr/lib/cni /opt/cni/bin \
    && sed -i 's/^\( *restrict_oom_score_adj\) = false/\1 = true/' /etc/containerd/config.toml \
    && grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml \
    && ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' \
        > /etc/containerd/cri-base.json \
    && containerd --version && runc --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
