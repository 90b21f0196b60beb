# Shared by the pcaps/make-*.sh scripts (sourced, not run): logging, installing
# missing tools, and the lifetime and wiring of the network namespaces a capture
# is made in. The sourcing script sets LOG_TAG and WORK first.

PIDS=()       # background processes, killed on exit
NAMESPACES=() # namespaces made by netns_start, removed on exit

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }

require_root() {
    [[ $EUID -eq 0 ]] || { echo "run as root (network namespaces, tcpdump)" >&2; exit 1; }
}

# install_missing COMMAND:PACKAGE ...: installs, from Debian, the packages of the
# commands that are not on the PATH.
install_missing() {
    local spec need=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || need+=("${spec#*:}")
    done
    if ((${#need[@]})); then
        log "installing: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

netns_cleanup() {
    set +e
    local p ns
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$WORK"
}

# netns_start NS ...: removes what an interrupted earlier run left, then makes the
# namespaces (IPv6 off, loopback up); they, $WORK and every PIDS entry go on exit.
netns_start() {
    NAMESPACES=("$@")
    trap netns_cleanup EXIT
    trap "exit 130" INT TERM
    local ns
    for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
    for ns in "$@"; do
        ip netns add "$ns"
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
        ip -n "$ns" link set lo up
    done
}

# wire_iface NS DEV [ADDR/LEN]: no offloads, so that a capture shows the segments on
# the wire (not GSO/GRO super-packets) with real checksums; the address, if given; up.
wire_iface() {
    ip -n "$1" link set "$2" mtu 1500
    ip netns exec "$1" ethtool -K "$2" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    if [[ -n "${3:-}" ]]; then ip -n "$1" addr add "$3" dev "$2"; fi
    ip -n "$1" link set "$2" up
}

# veth_pair NS_A DEV_A ADDR_A NS_B DEV_B ADDR_B: one veth between two namespaces.
veth_pair() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    wire_iface "$1" "$2" "$3"
    wire_iface "$4" "$5" "$6"
}

# use_resolver NS ADDR: `ip netns exec NS` bind-mounts this resolv.conf.
use_resolver() {
    mkdir -p "/etc/netns/$1"
    echo "nameserver $2" >"/etc/netns/$1/resolv.conf"
}
