#!/usr/bin/env bash
# The container engine BeeMesh's tests and developers use: Podman's
# Docker-compatible API service on a unix socket, with a busybox image imported
# from the busybox-static package (no registry is reachable here).
#
#   scripts/container-engine.sh start   install if needed, import the image, start the service
#   scripts/container-engine.sh stop    remove beemesh containers, stop the service
#   scripts/container-engine.sh env     print the DOCKER_HOST export line
#
# Every command is idempotent. `start` prints the export line on stdout (its
# progress goes to stderr), so `eval "$(scripts/container-engine.sh start)"`
# sets DOCKER_HOST.
# BEEMESH_ENGINE_SOCKET overrides the socket path (the pid file follows it).
set -euo pipefail

SOCKET="${BEEMESH_ENGINE_SOCKET:-/run/beemesh-podman.sock}"
PID_FILE="${SOCKET%.sock}.pid"
LOG_FILE="${BEEMESH_ENGINE_LOG:-/tmp/beemesh-podman.log}"
IMAGE="localhost/busybox:latest"
PACKAGES=(podman runc catatonit busybox-static)
READY_TIMEOUT_S=20
CONFIG_CHANGED=0

say () { printf 'container-engine: %s\n' "$*" >&2; }
die () { say "error: $*"; exit 1; }

as_root () {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_packages () {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: update once, then install.
  if ! as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/beemesh-apt.log 2>&1; then
    as_root apt-get update -qq >>/tmp/beemesh-apt.log 2>&1 || true
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/beemesh-apt.log 2>&1 \
      || { tail -n 20 /tmp/beemesh-apt.log >&2; die "apt-get install ${missing[*]} failed (log: /tmp/beemesh-apt.log)"; }
  fi
}

CONMON_SHIM=/usr/local/libexec/beemesh/conmon

# Podman 4.3 (Debian 12) looks for conmon's OOM marker in the container's bundle
# directory, but conmon 2.1.6 writes it into its working directory, which is
# whatever directory the API service was started from: State.OOMKilled would
# never be true (and an `oom` file would land there). The shim starts conmon in
# the bundle directory (its -b argument) so the marker is where podman reads it.
write_conmon_shim () {
  local want
  want='#!/bin/sh
# Installed by beemesh scripts/container-engine.sh: run conmon in the bundle dir
# so its OOM marker lands where podman 4.3 reads it (State.OOMKilled).
prev=
for arg in "$@"; do
  if [ "$prev" = "-b" ] || [ "$prev" = "--bundle" ]; then cd "$arg" 2>/dev/null || true; fi
  prev=$arg
done
exec /usr/bin/conmon "$@"'
  if [ ! -x "$CONMON_SHIM" ] || [ "$(cat "$CONMON_SHIM")" != "$want" ]; then
    as_root mkdir -p "$(dirname "$CONMON_SHIM")"
    printf '%s\n' "$want" | as_root tee "$CONMON_SHIM" >/dev/null
    as_root chmod 755 "$CONMON_SHIM"
  fi
}

# crun fails on this machine's hybrid cgroups (v1 controllers + a v2 mount), and
# the default ulimits are above what the sandbox permits. catatonit is the
# init process podman runs for HostConfig.Init (a recommends, so named here).
write_config () {
  local conf=/etc/containers/containers.conf
  local want
  want="[containers]
default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]
[engine]
runtime = \"runc\"
cgroup_manager = \"cgroupfs\"
conmon_path = [\"$CONMON_SHIM\"]"
  if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    as_root mkdir -p /etc/containers
    printf '%s\n' "$want" | as_root tee "$conf" >/dev/null
    CONFIG_CHANGED=1
  fi
}

import_image () {
  podman image exists "$IMAGE" && return 0
  local bb
  bb="$(command -v busybox || true)"
  [ -x /bin/busybox ] && bb=/bin/busybox
  [ -n "$bb" ] || die "busybox not found after installing busybox-static"
  file_is_static "$bb" || die "$bb is not statically linked (is busybox-static installed?)"
  local dir
  dir="$(mktemp -d /tmp/beemesh-rootfs.XXXXXX)"
  mkdir -p "$dir/rootfs/bin" "$dir/rootfs/tmp" "$dir/rootfs/etc" "$dir/rootfs/root"
  cp "$bb" "$dir/rootfs/bin/busybox"
  # One symlink per applet busybox has (sh, echo, sleep, cat, env, nc, httpd, wget, ...).
  local applet
  for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
  done
  chmod 1777 "$dir/rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$dir/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/rootfs/etc/group"
  tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
  local ok=1
  podman import --quiet --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$dir/rootfs.tar" "$IMAGE" >/dev/null || ok=0
  rm -rf "$dir"
  [ "$ok" -eq 1 ] || die "podman import of the busybox rootfs failed"
  say "imported $IMAGE from $bb"
}

file_is_static () {
  # No `file` on a minimal machine: a static binary has no PT_INTERP, so ldd refuses it.
  ! ldd "$1" >/dev/null 2>&1
}

ping_socket () {
  [ -S "$SOCKET" ] && curl -sf --max-time 2 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1
}

# The service's pid, when the pid file names a live podman process (not a reused pid).
service_pid () {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'podman system service' || return 1
  printf '%s' "$pid"
}

# SIGTERM (podman finishes in-flight calls for ~1 s), SIGKILL after 5 s.
kill_service () {
  local pid
  if pid="$(service_pid)"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  as_root rm -f "$SOCKET" "$PID_FILE"
}

start_service () {
  if [ "$CONFIG_CHANGED" -eq 0 ] && service_pid >/dev/null && ping_socket; then
    return 0
  fi
  # A dead service leaves its socket and pid file behind (/run may outlive it);
  # a live one with an old configuration is restarted.
  kill_service
  as_root mkdir -p "$(dirname "$SOCKET")"
  say "starting podman system service on $SOCKET (log: $LOG_FILE)"
  (cd / && exec setsid podman system service --time=0 "unix://$SOCKET" >>"$LOG_FILE" 2>&1 </dev/null) &
  echo $! | as_root tee "$PID_FILE" >/dev/null
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until ping_socket; do
    if ! service_pid >/dev/null; then
      tail -n 20 "$LOG_FILE" >&2 || true
      die "podman system service exited before answering on $SOCKET (log: $LOG_FILE)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$LOG_FILE" >&2 || true
      die "podman system service did not answer GET /_ping on $SOCKET within ${READY_TIMEOUT_S}s (log: $LOG_FILE)"
    fi
    sleep 0.1
  done
}

stop_service () {
  if command -v podman >/dev/null 2>&1; then
    local ids
    ids="$(podman ps -aq --filter label=beemesh.workload 2>/dev/null || true)"
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      podman rm -f -t 0 $ids >/dev/null 2>&1 || true
    fi
  fi
  kill_service
}

print_env () {
  printf 'export DOCKER_HOST=unix://%s\n' "$SOCKET"
}

case "${1:-}" in
  start)
    install_packages
    write_conmon_shim
    write_config
    import_image
    start_service
    print_env
    ;;
  stop)
    stop_service
    ;;
  env)
    print_env
    ;;
  *)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
