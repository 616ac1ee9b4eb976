#!/usr/bin/env bash
# Builds localhost/beemesh-node-base:20, a stand-in for docker.io/library/node:20-bookworm-slim
# made FROM scratch out of this machine's own Node 20 install, for machines that can reach
# npm and Debian's mirrors but no container registry:
#
#   deploy/local-base.sh [image]        (default localhost/beemesh-node-base:20)
#   podman build --build-arg BASE=localhost/beemesh-node-base:20 -f deploy/Containerfile -t localhost/beemesh:dev .
#
# The image holds what deploy/Containerfile uses from the official one, at the same paths:
#   /usr/local/bin/node                 the host's node binary (must be Node 20)
#   the shared libraries `ldd node` lists, and the dynamic loader
#   /usr/local/lib/node_modules/npm     the host's npm, with npm and npx on PATH
#   /usr/local/etc/npmrc                the host's global npm config (its cafile, if any)
#   /etc/ssl/certs/ca-certificates.crt  the host's CA bundle
#   /bin/sh and the usual tools         busybox-static (apt-get install busybox-static)
#   /etc/passwd, /etc/group             root, and the user `node` (uid/gid 1000) as in the official image
#   /tmp (1777), /home/node
# Needs root (or a podman that can import images), podman, ldd and busybox-static.
set -euo pipefail

IMAGE="${1:-localhost/beemesh-node-base:20}"

say () { printf 'local-base: %s\n' "$*" >&2; }
die () { say "error: $*"; exit 1; }

command -v podman >/dev/null || die "podman is not installed"
NODE="$(readlink -f "$(command -v node || true)")"
[ -x "$NODE" ] || die "node is not on PATH"
major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
[ "$major" = 20 ] || die "$NODE is Node $major; this base is for Node 20"
NPM_DIR="$(readlink -f "$(dirname "$NODE")/../lib/node_modules/npm")"
[ -f "$NPM_DIR/bin/npm-cli.js" ] || die "npm not found next to $NODE (looked in $NPM_DIR)"
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX="$(command -v busybox || true)"
[ -n "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 || die "a static busybox is needed (apt-get install busybox-static)"

dir="$(mktemp -d /tmp/beemesh-node-base.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
root="$dir/rootfs"
mkdir -p "$root"/{bin,usr/bin,usr/local/bin,usr/local/lib/node_modules,usr/local/etc,etc/ssl/certs,tmp,home/node,root}

# node and every library it links (ldd prints "name => path (addr)" or "path (addr)").
install -m 755 "$NODE" "$root/usr/local/bin/node"
for lib in $(ldd "$NODE" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# glibc ≥ 2.34 has files and dns lookups built in; tell it the order.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"

# npm as the official image lays it out.
cp -a "$NPM_DIR" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
for rc in "$(dirname "$NPM_DIR")/../../etc/npmrc" /etc/npmrc; do
  if [ -f "$rc" ]; then cp "$rc" "$root/usr/local/etc/npmrc"; break; fi
done

# A shell and the tools RUN lines use; /usr/bin/env for the `#!/usr/bin/env node` shebangs.
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
ln -s ../../bin/busybox "$root/usr/bin/env"

[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
chown 1000:1000 "$root/home/node"

tar --numeric-owner -C "$root" -cf "$dir/rootfs.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=$("$NODE" -p 'process.versions.node')" \
  --change 'CMD ["node"]' \
  "$dir/rootfs.tar" "$IMAGE" >/dev/null
say "built $IMAGE from $NODE (Node $("$NODE" -p 'process.versions.node'), npm $("$NODE" "$NPM_DIR/bin/npm-cli.js" --version 2>/dev/null))"
