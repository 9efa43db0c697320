#!/usr/bin/env bash
# One real Kubernetes node on this machine (v1.28.0 by default, see K8S_VERSION), joined to the
# control plane that cluster.sh runs in DIR: containerd (CRI, cgroupfs, overlayfs) + runc + bridge
# CNI (10.244.0.0/24 on cni0) + kubelet + kube-proxy (iptables mode). Pods really run; Services'
# ClusterIPs work from pods and the host.
#
#   node.sh start DIR   DIR = the folder given to `cluster.sh start`, which must have been started
#                       with  SCHEDULER=1 BIND=0.0.0.0 ADVERTISE=<node IP> RECONCILER=lease
#                       Unpacks kubelet/kube-proxy/crictl into DIR/bin, starts containerd, imports
#                       pause.tar and the IMAGES, starts the kubelet and kube-proxy, installs the guard
#                       rules, waits until the Node is Ready; prints the kubeconfig path last.
#                       Idempotent: a running component is left alone; images are re-imported.
#   node.sh stop DIR    stop exactly what start started (PIDs in DIR/run), remove every pod through
#                       CRI, then undo the host changes: iptables chains (KUBE-*, CNI-*, the guard),
#                       cni0, mounts under DIR, kubepods cgroups, sysctls, /var/lib/kubelet and
#                       /var/log/{pods,containers} if start created them. Safe to repeat; run it
#                       before `cluster.sh stop DIR` (the other order works too).
#
# Version: K8S_VERSION=1.28 or 1.33 (MAJOR.MINOR): the kubelet and kube-proxy of that version (1.28:
#      the binaries beside this script, 1.33: those in v1.33/; crictl is the same for all). Default:
#      the control plane's version in DIR (DIR/k8s-version, written by cluster.sh), so 1.28 unless
#      cluster.sh was given K8S_VERSION; a K8S_VERSION other than the control plane's is refused.
#      Flags and config files are the same for both versions (README.md: "Versions").
# Env: IMAGES="a.tar b.tar"  docker-archive tars to import (image.py makes them); use them with
#                            imagePullPolicy: Never (or IfNotPresent). Nothing is ever pulled.
#      NODE_IP      default: eth0's IPv4, else that of the default route's device. Must equal the
#                   control plane's ADVERTISE (pods reach the API server there).
#      NODE_NAME    default: hostname (lower case).   KUBE_PROXY=0: no kube-proxy (no ClusterIPs).
#      KUBELET_V, KUBE_PROXY_V  log levels (default 1).   READY_TIMEOUT  seconds (default 120).
# Logs: DIR/logs/{containerd,kubelet,kube-proxy}.log. State: DIR/node (configs), DIR/var (containerd
# root, kubelet root-dir, CNI IPAM), DIR/run (PIDs, containerd state and socket).
#
# SAFETY: while the node runs, the filter chain REALNODE-GUARD (first in OUTPUT and FORWARD) REJECTs
#   - traffic addressed to the service CIDR 10.96.0.0/12 that kube-proxy did not DNAT, or that it
#     DNATed to anything but a pod (10.244.0.0/16) or the node's IP;
#   - traffic from the pod CIDR 10.244.0.0/16 to anything but the pod CIDR, the service CIDR, the node IP.
#   So pods talk only to each other, to the host and to ClusterIPs, and nothing of theirs leaves the
#   machine (pods have no DNS either: their resolv.conf says nameserver 127.0.0.1). hostNetwork pods
#   are host processes and are not covered.
# Only one node per machine (ports 10250/10248/10249/10256, cni0, the kubepods cgroups and the iptables
# chains are machine-wide): a second `start` with another DIR is refused while one runs.
# Needs root and: apt-get install -y containerd runc containernetworking-plugins iptables conntrack
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}; DIR=${2:-}
usage() { echo "usage: node.sh start|stop DIR   (DIR: the folder of cluster.sh start)" >&2; exit 2; }
[ -n "$cmd" ] && [ -n "$DIR" ] || usage
case "$cmd" in start|stop) ;; *) usage;; esac
[ -d "$DIR" ] || { echo "no such folder: $DIR (start the control plane with cluster.sh first)" >&2; exit 1; }
DIR=$(cd "$DIR" && pwd)
BIN=$DIR/bin RUN=$DIR/run LOGS=$DIR/logs P=$DIR/pki N=$DIR/node V=$DIR/var
SOCK=$RUN/containerd/containerd.sock
LOCK=/run/k8s-test-node.dir   # which DIR owns this machine's node
POD_CIDR=10.244.0.0/16 SVC_CIDR=10.96.0.0/12 GUARD=REALNODE-GUARD
# Kubernetes version: the control plane's (cluster.sh records it; 1.28 for a DIR without the record).
CP_V=$(cat "$DIR/k8s-version" 2>/dev/null || echo 1.28)
KV=${K8S_VERSION:-$CP_V}; KV=${KV#v}
# The Kubernetes binaries are not shipped here: K8S_BIN_DIR names a folder that holds them, one
# subfolder per version (v1.28/, v1.33/, …), each with kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy (plain or .xz), and crictl(.xz) at the top.
[ -n "${K8S_BIN_DIR:-}" ] || { echo "K8S_BIN_DIR is not set: give a folder with v$KV/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy}[.xz]" >&2; exit 3; }
SRC=$K8S_BIN_DIR/v$KV
if [ "$KV" = 1.28 ]; then KBIN=$BIN; else KBIN=$BIN/v$KV; fi
log() { echo "[node.sh] $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
launch() { local n=$1; shift; setsid "$@" >>"$LOGS/$n.log" 2>&1 </dev/null & echo $! >"$RUN/$n.pid"; }
stop_one() { # NAME...: TERM each recorded PID, wait up to 15 s for all, then KILL what is left
  local n pids=() pid
  for n in "$@"; do
    [ -f "$RUN/$n.pid" ] || continue
    pid=$(cat "$RUN/$n.pid"); rm -f "$RUN/$n.pid"
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for _ in $(seq 1 60); do
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && break; done
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
crictl() { "$BIN/crictl" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 30s "$@"; }
# Machine-wide paths the kubelet (v1.28 and v1.33) and containerd use whatever their flags say;
# removed on stop only if start found them absent (entries added under a pre-existing one are
# removed one by one).
HOST_PATHS="/var/lib/kubelet /var/log/pods /var/log/containers /run/containerd"
CGROUPS() { ls -d /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods 2>/dev/null || true; }
SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet"

# Remove every KUBE-*/CNI-* chain (and jumps to it) and the guard chain from one table.
drop_chains() {
  local ipt=$1 t=$2 chains ch
  chains=$($ipt -t "$t" -S 2>/dev/null | awk -v g="$GUARD" '$1=="-N" && ($2 ~ /^(KUBE|CNI)-/ || index($2, g) == 1) {print $2}')
  [ -n "$chains" ] || return 0
  # jumps to them from the other chains (built-in ones), then flush, then delete
  $ipt -t "$t" -S | awk -v g="$GUARD" -v cs=" $(echo $chains) " '$1 == "-A" && !index(cs, " " $2 " ") {
      for (i = 3; i < NF; i++) if (($i == "-j" || $i == "-g") && index(cs, " " $(i+1) " ")) {print; break} }' |
    sed 's/^-A/-D/' | while read -r r; do eval "$ipt -t $t $r" 2>/dev/null || true; done
  for ch in $chains; do $ipt -t "$t" -F "$ch" 2>/dev/null || true; done
  for ch in $chains; do $ipt -t "$t" -X "$ch" 2>/dev/null || true; done
}

if [ "$cmd" = stop ]; then
  t0=$(now)
  owner=$(cat "$LOCK" 2>/dev/null || true)
  if [ -n "$owner" ] && [ "$owner" != "$DIR" ]; then   # never undo another DIR's node
    stop_one kube-proxy kubelet containerd
    log "the node on this machine was started from $owner: host state left alone"; exit 0
  fi
  if [ ! -f "$N/host.orig" ] && ! ls "$RUN"/{kube-proxy,kubelet,containerd}.pid >/dev/null 2>&1; then
    log "no node was started from $DIR"; exit 0
  fi
  stop_one kube-proxy kubelet
  if alive containerd; then   # stop + remove every pod through CRI (CNI DEL, shims exit), then containerd
    pods=$(crictl pods -q 2>/dev/null || true)
    if [ -n "$pods" ]; then
      # shellcheck disable=SC2086
      crictl stopp $pods >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      crictl rmp -f $pods >/dev/null 2>&1 || true
    fi
  fi
  stop_one containerd
  # Shims of our containerd (their command line names our socket) and anything left in the pod cgroups.
  for pid in $(grep -lsF -- "$SOCK" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q containerd-shim && kill -KILL "$pid" 2>/dev/null || true
  done
  for c in $(CGROUPS); do   # only the pod cgroups this node made
    [ -f "$N/host.orig" ] && grep -qxF "$c absent" "$N/host.orig" || continue
    for pid in $(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  # iptables: kube-proxy's own cleanup, then every KUBE-*/CNI-* chain (kubelet, CNI) and the guard.
  [ -x "$KBIN/kube-proxy" ] && "$KBIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  for t in filter nat mangle raw; do drop_chains iptables $t; drop_chains ip6tables $t; done
  conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
  conntrack -D -d "$SVC_CIDR" >/dev/null 2>&1 || true
  if [ -f "$N/host.orig" ] && grep -qx 'cni0 absent' "$N/host.orig"; then ip link del cni0 2>/dev/null || true; fi
  # Mounts under DIR (kubelet volumes and its root-dir bind mount, container rootfs, netns, shm).
  awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for c in $(CGROUPS); do
    if [ -f "$N/host.orig" ] && grep -qxF "$c absent" "$N/host.orig"; then
      find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    fi
  done
  if [ -f "$N/host.orig" ]; then
    for p in $HOST_PATHS; do
      if grep -qxF "$p absent" "$N/host.orig"; then rm -rf "$p"
      elif [ -d "$p" ] && [ -f "$N/host.ls.$(echo "$p" | tr / _)" ]; then
        comm -13 "$N/host.ls.$(echo "$p" | tr / _)" <(ls -A "$p" | sort) | while read -r e; do rm -rf "${p:?}/$e"; done
      fi
    done
  fi
  rm -rf "$RUN/containerd" "$RUN/runc" "$V/cni-ipam"
  if [ -f "$N/sysctl.orig" ]; then
    sed 's/ //g' "$N/sysctl.orig" | while read -r kv; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done
  fi
  rm -f "$N/sysctl.orig" "$N/host.orig" "$N"/host.ls.*
  [ "$(cat "$LOCK" 2>/dev/null)" = "$DIR" ] && rm -f "$LOCK"
  log "stopped in $(secs "$t0") s"
  exit 0
fi

# ---------------------------------------------------------------------------------------- start
T0=$(now)
[ "$(id -u)" = 0 ] || die "needs root"
for c in containerd runc ctr iptables conntrack ip openssl xz python3 curl; do
  command -v "$c" >/dev/null || die "$c is missing: apt-get install -y containerd runc containernetworking-plugins iptables conntrack"
done
CNI_BIN=${CNI_BIN_DIR:-}
for d in /usr/lib/cni /opt/cni/bin; do [ -z "$CNI_BIN" ] && [ -x "$d/bridge" ] && CNI_BIN=$d; done
[ -n "$CNI_BIN" ] || die "no CNI plugins (bridge, host-local, portmap): apt-get install -y containernetworking-plugins"
[ "${#SOCK}" -lt 100 ] || die "DIR is too long for a unix socket path ($SOCK); use a shorter DIR"
[ -f "$DIR/ports" ] && [ -f "$P/ca.key" ] || die "$DIR has no control plane: run cluster.sh start $DIR first"
[ "$KV" = "$CP_V" ] || die "K8S_VERSION=$KV, but the control plane in $DIR runs $CP_V: use K8S_VERSION=$CP_V (or leave it unset)"
{ [ -f "$SRC/kubelet.xz" ] || [ -x "$SRC/kubelet" ]; } && { [ -f "$SRC/kube-proxy.xz" ] || [ -x "$SRC/kube-proxy" ]; } || die "no kubelet/kube-proxy for Kubernetes $KV in $SRC"
. <(tr ' ' '\n' <"$DIR/ports")

if [ -z "${NODE_IP:-}" ]; then
  NODE_IP=$(ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
  if [ -z "$NODE_IP" ]; then
    dev=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i+1); exit}}')
    [ -n "$dev" ] && NODE_IP=$(ip -4 -o addr show dev "$dev" | awk '{print $4}' | cut -d/ -f1 | head -1)
  fi
fi
[ -n "${NODE_IP:-}" ] || die "cannot find the node IP (no eth0, no default route): set NODE_IP"
NODE=${NODE_NAME:-$(hostname | tr 'A-Z' 'a-z')}

# The control plane must serve pods: advertised on NODE_IP, bound beyond 127.0.0.1, lease endpoints.
alive kube-apiserver || die "the API server of $DIR is not running: cluster.sh start $DIR"
apiflag() { tr '\0' '\n' <"/proc/$(cat "$RUN/kube-apiserver.pid")/cmdline" | awk -v f="--$1" 'p {print; exit} $0 == f {p = 1}'; }
if [ "$(apiflag advertise-address)" != "$NODE_IP" ] || [ "$(apiflag bind-address)" != 0.0.0.0 ] ||
   [ "$(apiflag endpoint-reconciler-type)" != lease ]; then
  die "the control plane in $DIR does not serve pods on $NODE_IP; restart it with:
  cluster.sh stop $DIR; SCHEDULER=1 BIND=0.0.0.0 ADVERTISE=$NODE_IP RECONCILER=lease cluster.sh start $DIR"
fi
[ -n "$(apiflag kubelet-client-certificate)" ] || log "note: no --kubelet-client-certificate: kubectl logs/exec will not work (KUBELET_CLIENT=1)"
[ -f "$RUN/kube-scheduler.pid" ] || log "note: no kube-scheduler in $DIR (SCHEDULER=1): pods will stay Pending"

# One node per machine.
if [ -f "$LOCK" ] && [ "$(cat "$LOCK")" != "$DIR" ]; then
  other=$(cat "$LOCK")
  for n in kubelet containerd kube-proxy; do
    [ -f "$other/run/$n.pid" ] && kill -0 "$(cat "$other/run/$n.pid")" 2>/dev/null &&
      die "a node is already running from $other; node.sh stop $other first"
  done
fi
echo "$DIR" >"$LOCK"
mkdir -p "$BIN" "$KBIN" "$RUN" "$LOGS" "$N" "$V"

for b in kubelet kube-proxy; do
  [ -x "$KBIN/$b" ] || [ ! -x "$SRC/$b" ] || ln -sf "$SRC/$b" "$KBIN/$b"
  [ -x "$KBIN/$b" ] || { xz -dc "$SRC/$b.xz" >"$KBIN/$b.tmp" && chmod +x "$KBIN/$b.tmp" && mv "$KBIN/$b.tmp" "$KBIN/$b"; }
done
[ -x "$BIN/crictl" ] || { xz -dc "$K8S_BIN_DIR/crictl.xz" >"$BIN/crictl.tmp" && chmod +x "$BIN/crictl.tmp" && mv "$BIN/crictl.tmp" "$BIN/crictl"; }

# What the host looks like before we touch it (once per run): restored by stop.
if [ ! -f "$N/sysctl.orig" ]; then
  # shellcheck disable=SC2086
  sysctl $SYSCTLS 2>/dev/null >"$N/sysctl.orig" || true
fi
if [ ! -f "$N/host.orig" ]; then
  { for p in $HOST_PATHS; do
      if [ -e "$p" ]; then echo "$p present"; ls -A "$p" | sort >"$N/host.ls.$(echo "$p" | tr / _)"; else echo "$p absent"; fi
    done
    for c in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/; do
      c=${c%/}; [ "$c" = /sys/fs/cgroup/kubepods ] || c=$c/kubepods
      [ -d "${c%/kubepods}" ] || continue
      if [ -d "$c" ]; then echo "$c present"; else echo "$c absent"; fi
    done
    if ip link show cni0 >/dev/null 2>&1; then echo "cni0 present"; else echo "cni0 absent"; fi
  } >"$N/host.orig"
fi

# Guard rules, before anything can run a pod (see the header). Re-made on every start.
guard() { # one atomic iptables-restore: the chains are never seen empty, even on a re-run
  iptables-restore --noflush <<EOF
*filter
:$GUARD - [0:0]
:$GUARD-SVC - [0:0]
-A $GUARD -m addrtype --dst-type LOCAL -m comment --comment "to this host (and the ICMP errors of the REJECTs)" -j RETURN
-A $GUARD -m conntrack --ctorigdst $SVC_CIDR -j $GUARD-SVC
-A $GUARD -s $POD_CIDR -d $POD_CIDR -j RETURN
-A $GUARD -s $POD_CIDR -d $SVC_CIDR -j RETURN
-A $GUARD -s $POD_CIDR -d $NODE_IP/32 -j RETURN
-A $GUARD -s $POD_CIDR -m comment --comment "test node: pods never leave the machine" -j REJECT
-A $GUARD-SVC -m conntrack ! --ctstate DNAT -m comment --comment "test node: ClusterIP without kube-proxy DNAT" -j REJECT
-A $GUARD-SVC -d $POD_CIDR -j RETURN
-A $GUARD-SVC -d $NODE_IP/32 -j RETURN
-A $GUARD-SVC -m comment --comment "test node: ClusterIP DNATed off the machine" -j REJECT
COMMIT
EOF
  guard_first
}
guard_first() { # our jump first in OUTPUT and FORWARD (kube-proxy and the kubelet prepend theirs)
  local ch
  for ch in OUTPUT FORWARD; do
    [ "$(iptables -S "$ch" | sed -n 2p)" = "-A $ch -j $GUARD" ] && [ "$(iptables -S "$ch" | grep -c -- "-j $GUARD\$")" = 1 ] && continue
    while iptables -D "$ch" -j "$GUARD" 2>/dev/null; do :; done
    iptables -I "$ch" 1 -j "$GUARD"
  done
}
guard
sysctl -q -w net.ipv4.ip_forward=1
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl -q -w net.bridge.bridge-nf-call-iptables=1
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || log "note: no br_netfilter: pod-to-pod ClusterIP traffic on the bridge may bypass kube-proxy"

# Write stdin to $1 only when it differs: kube-proxy exits ("content of the proxy server's
# configuration file was updated") on any write to its config file, even with the same content.
put() { local t; t=$(mktemp "$1.XXXX"); cat >"$t"; if cmp -s "$t" "$1"; then rm -f "$t"; else mv "$t" "$1"; fi; }

# containerd: cgroupfs, overlayfs, sandbox image localhost/pause:3.9, all state under DIR.
# restrict_oom_score_adj = true is REQUIRED where root lacks CAP_SYS_RESOURCE (this kind of VM):
# otherwise runc fails every sandbox ("can't get final child's PID from pipe: EOF").
mkdir -p "$N/cni" "$V/containerd" "$RUN/containerd" "$RUN/runc" "$V/cni-ipam"
put "$N/containerd.toml" <<EOF
version = 2
root = "$V/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt"]
[grpc]
  address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.9"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$N/cni"
    max_conf_num = 1
EOF
put "$N/cni/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "testnode",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$V/cni-ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
if ! alive containerd; then
  launch containerd containerd --config "$N/containerd.toml"
  for _ in $(seq 1 120); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.25; done
  ctr -a "$SOCK" version >/dev/null 2>&1 || die "containerd did not start; see $LOGS/containerd.log"
fi
T1=$(now)
# pause.tar (localhost/pause:3.9) is built from pause.c the first time (gcc, static glibc).
PAUSE=$DIR/pause.tar
if [ ! -f "$PAUSE" ]; then
  gcc -static -O2 -s -o "$DIR/pause" "$HERE/pause.c" || die "cannot build pause from $HERE/pause.c (gcc and libc6-dev)"
  python3 "$HERE/image.py" --tag localhost/pause:3.9 --out "$PAUSE" "$DIR/pause" --dest /pause --user 65535 --bare >/dev/null \
    || die "cannot pack $PAUSE"
fi
for img in "$PAUSE" ${IMAGES:-}; do
  [ -f "$img" ] || die "no such image tar: $img"
  ctr -a "$SOCK" -n k8s.io images import "$img" >/dev/null || die "import of $img failed"
done
log "containerd up, $(( $(echo ${IMAGES:-} | wc -w) + 1 )) image(s) imported in $(secs "$T1") s"

# Client certs + kubeconfigs for the kubelet (system:node:NODE) and kube-proxy (system:kube-proxy).
cert() { # name subject
  [ -f "$P/$1.crt" ] && openssl x509 -in "$P/$1.crt" -noout -subject 2>/dev/null | grep -qF "${2##*CN=}" && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$P/$1.key" -out "$P/$1.csr" -subj "$2" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 3650 -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
  rm -f "$P/$1.csr" "$P/$1.ext"; chmod 600 "$P/$1.key"
}
kc() { put "$1" <<KC
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: $P/ca.crt}}]
users: [{name: u, user: {client-certificate: $P/$2.crt, client-key: $P/$2.key}}]
contexts: [{name: test, context: {cluster: test, user: u}}]
current-context: test
KC
}
cert kubelet "/O=system:nodes/CN=system:node:$NODE"; cert kube-proxy "/CN=system:kube-proxy"
kc "$N/kubelet.kubeconfig" kubelet; kc "$N/kube-proxy.kubeconfig" kube-proxy
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' | put "$N/resolv.conf"

put "$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$SOCK
failSwapOn: false
address: $NODE_IP
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDomain: cluster.local
resolvConf: $N/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%"}
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
T2=$(now)
if ! alive kubelet; then
  launch kubelet "$KBIN/kubelet" --config "$N/kubelet.yaml" --kubeconfig "$N/kubelet.kubeconfig" \
    --root-dir "$V/kubelet" --cert-dir "$V/kubelet/pki" --hostname-override "$NODE" --node-ip "$NODE_IP" \
    --v="${KUBELET_V:-1}"
fi

put "$N/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $N/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {minSyncPeriod: 0s, syncPeriod: 30s}
EOF
if [ "${KUBE_PROXY:-1}" = 1 ] && ! alive kube-proxy; then
  launch kube-proxy "$KBIN/kube-proxy" --config "$N/kube-proxy.yaml" --v="${KUBE_PROXY_V:-1}"
fi

api() { curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "https://127.0.0.1:$API_PORT$1"; }
ready() {
  api "/api/v1/nodes/$NODE" | python3 -c 'import json,sys
c=[x for x in json.load(sys.stdin)["status"].get("conditions",[]) if x["type"]=="Ready"]
sys.exit(0 if c and c[0]["status"]=="True" else 1)' 2>/dev/null
}
proxy_ready() { [ "${KUBE_PROXY:-1}" != 1 ] || curl -sf http://127.0.0.1:10256/healthz >/dev/null; }
deadline=$(( $(date +%s) + ${READY_TIMEOUT:-120} ))
until ready && proxy_ready; do
  for n in containerd kubelet; do alive $n || die "$n exited; see $LOGS/$n.log"; done
  [ "${KUBE_PROXY:-1}" != 1 ] || alive kube-proxy || die "kube-proxy exited; see $LOGS/kube-proxy.log"
  [ "$(date +%s)" -lt "$deadline" ] || die "Node $NODE not Ready after ${READY_TIMEOUT:-120} s; see $LOGS"
  sleep 0.25
done
guard_first
log "Node $NODE ($NODE_IP) Ready $(secs "$T2") s after the kubelet start; node.sh start took $(secs "$T0") s; logs in $LOGS"
echo "$DIR/kubeconfig"
