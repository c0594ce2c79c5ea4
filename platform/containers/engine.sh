#!/usr/bin/env bash
# A container engine for building the image and running the compose stack, on any machine.
#
#   eval "$(platform/containers/engine.sh up)"   # sets DOCKER_HOST, PUBLISH_ADDRESS, ENGINE_STARTED
#   platform/containers/engine.sh down          # stops the engine `up` started (nothing else)
#   platform/containers/engine.sh status
#
# `up` uses an engine that already answers (DOCKER_HOST, or Docker's default socket), with ports
# published on 127.0.0.1. Otherwise it starts Debian's dockerd (installing docker.io if missing)
# inside a network namespace of its own, `platform-engine`, joined to this machine by one veth pair
# on 10.213.1.0/30 and nothing else: the namespace has no default route, and this machine drops every
# connection the namespace tries to open towards it. Containers can reach their own networks and
# nothing beyond; the machine reaches the ports they publish on 10.213.1.2 (PUBLISH_ADDRESS).
# Images and layers stay in /var/lib/platform-engine between runs; `down --purge` removes them too.
set -euo pipefail

NETNS=platform-engine
STATE=/run/platform-engine
DATA=/var/lib/platform-engine
SOCKET=$STATE/docker.sock
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
HOST_IF=pe-host
NS_IF=pe-ns
HOST_ADDRESS=10.213.1.1
NS_ADDRESS=10.213.1.2
RULE_COMMENT=platform-engine
READY_TIMEOUT=${ENGINE_READY_TIMEOUT:-60}

say() { echo "engine: $*" >&2; }
fail() {
  say "$*"
  exit 1
}

answers() {  # answers [DOCKER_HOST]: does an engine answer there within 10 s?
  DOCKER_HOST=${1-${DOCKER_HOST:-}} timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

own_engine_running() {
  [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

print_environment() {  # the lines `eval` takes: where the engine is, where its ports are, who stops it
  printf 'export DOCKER_HOST=%q\nexport PUBLISH_ADDRESS=%q\nexport ENGINE_STARTED=%q\n' "$1" "$2" "$3"
  if [[ $1 == "unix://$SOCKET" ]]; then
    # Where the engine's namespace is and the machine's side of the link, for tests of the isolation.
    printf 'export ENGINE_NETNS=%q\nexport ENGINE_HOST_ADDRESS=%q\n' "$NETNS" "$HOST_ADDRESS"
    # Our engine is Debian's 20.10 and the client may have no buildx: use the classic builder there.
    printf 'export DOCKER_BUILDKIT=0\n'
  fi
}

host_rules() {  # host_rules -A|-D: the host drops connections the namespace opens towards it
  local action=$1 chain
  local -a match
  for chain in INPUT FORWARD; do
    match=(-i "$HOST_IF" -m comment --comment "$RULE_COMMENT" -j DROP)
    # Towards the host itself only new connections are dropped: replies to the host's own stay.
    [[ $chain == INPUT ]] && match=(-m conntrack --ctstate NEW "${match[@]}")
    if [[ $action == -A ]]; then
      iptables -C "$chain" "${match[@]}" 2>/dev/null || iptables -I "$chain" "${match[@]}"
    else
      while iptables -C "$chain" "${match[@]}" 2>/dev/null; do iptables -D "$chain" "${match[@]}"; done
    fi
  done
}

network_up() {
  [[ -e /run/netns/$NETNS ]] || ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NETNS"
    ip addr add "$HOST_ADDRESS/30" dev "$HOST_IF"
    ip -n "$NETNS" addr add "$NS_ADDRESS/30" dev "$NS_IF"
  fi
  ip link set "$HOST_IF" up
  ip -n "$NETNS" link set "$NS_IF" up
  host_rules -A
}

require_privileges() {
  [[ $(id -u) == 0 ]] || fail "no container engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}), and starting one needs root (a network namespace and dockerd). Run as root, or point DOCKER_HOST at an engine."
  unshare --net true 2>/dev/null || fail "no container engine answers, and this machine refuses a new network namespace (unshare --net): cannot start one here"
  if ! command -v dockerd >/dev/null || ! command -v iptables >/dev/null; then
    say "installing Debian's docker.io (dockerd, containerd, runc, iptables)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables; } >&2 ||
      fail "could not install docker.io with apt-get"
  fi
  command -v docker >/dev/null || fail "dockerd is installed but no docker client is on PATH"
}

start_own_engine() {
  require_privileges
  mkdir -p "$STATE" "$DATA"
  rm -f "$PIDFILE" "$SOCKET"  # left by an engine that did not stop cleanly (it is not running)
  network_up
  # nsenter joins only the network namespace: `ip netns exec` would also remount /sys, hiding the
  # cgroup mounts dockerd needs. setsid: the engine outlives this script, until `down`.
  # The hard nofile limit here is 20000 and cannot be raised, so containers are given exactly that.
  setsid nsenter --net="/run/netns/$NETNS" dockerd \
    --data-root "$DATA" --exec-root "$STATE/exec" --host "unix://$SOCKET" --pidfile "$PIDFILE" \
    --default-ulimit nofile=20000:20000 >"$LOG" 2>&1 </dev/null &
  local deadline=$((SECONDS + READY_TIMEOUT))
  until answers "unix://$SOCKET"; do
    if ! kill -0 $! 2>/dev/null; then
      tail -n 20 "$LOG" >&2
      stop_own_engine
      fail "dockerd exited during start-up; its log is above"
    fi
    if ((SECONDS > deadline)); then
      tail -n 20 "$LOG" >&2
      stop_own_engine
      fail "dockerd did not answer within ${READY_TIMEOUT} s; its log is above"
    fi
    sleep 1
  done
  say "started dockerd $(DOCKER_HOST=unix://$SOCKET docker info --format '{{.ServerVersion}}') in network namespace $NETNS (socket $SOCKET, ports on $NS_ADDRESS, log $LOG)"
}

stop_own_engine() {
  if own_engine_running; then
    local pid
    pid=$(cat "$PIDFILE")
    kill -TERM "$pid"
    # dockerd gives running containers 10 s to stop, then stops its containerd.
    for _ in $(seq 45); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Whatever this engine left behind: its containerd, shims and container processes, then mounts.
  pkill -KILL -f -- "$STATE/exec" 2>/dev/null || true
  local mount_point
  awk -v state="$STATE" -v data="$DATA" 'index($5, state) == 1 || index($5, data) == 1 { print $5 }' \
    /proc/self/mountinfo | sort -r | while read -r mount_point; do
    umount -l "$mount_point" 2>/dev/null || true
  done
  if ip link show "$HOST_IF" >/dev/null 2>&1; then ip link del "$HOST_IF"; fi
  if command -v iptables >/dev/null; then host_rules -D; fi
  if [[ -e /run/netns/$NETNS ]]; then ip netns del "$NETNS"; fi
  rm -rf "$STATE"
}

case ${1:-} in
  up)
    if own_engine_running && answers "unix://$SOCKET"; then
      print_environment "unix://$SOCKET" "$NS_ADDRESS" 0
    elif [[ -z ${DOCKER_HOST:-} || $DOCKER_HOST != "unix://$SOCKET" ]] && command -v docker >/dev/null && answers; then
      say "using the engine that answers at ${DOCKER_HOST:-the default socket}"
      print_environment "${DOCKER_HOST:-}" 127.0.0.1 0
    else
      start_own_engine
      print_environment "unix://$SOCKET" "$NS_ADDRESS" 1
    fi
    ;;
  down)
    [[ $(id -u) == 0 ]] || fail "stopping the engine needs root"
    stop_own_engine
    if [[ ${2:-} == --purge ]]; then
      rm -rf "$DATA"
      say "removed $DATA"
    fi
    ;;
  status)
    if own_engine_running; then
      echo "dockerd $(cat "$PIDFILE") in network namespace $NETNS, socket $SOCKET, ports on $NS_ADDRESS"
    else
      echo "not running"
    fi
    ;;
  *)
    echo "usage: $0 up|down [--purge]|status" >&2
    exit 2
    ;;
esac
