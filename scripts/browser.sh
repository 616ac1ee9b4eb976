#!/usr/bin/env bash
# The browser the web view's test drives (test/ui.test.ts): Debian's chromium,
# headless, through playwright-core (which downloads no browser of its own).
#
#   scripts/browser.sh    print the chromium executable's path, installing it first if needed
#
# BEEMESH_CHROMIUM names an executable to use instead. Installing needs root
# (or sudo without a password) and apt-get; without them, and without a
# browser, it exits 1 with what to do. Progress goes to stderr, the path to stdout.
set -euo pipefail

PACKAGES=(chromium)

say () { printf 'browser: %s\n' "$*" >&2; }
die () { say "error: $*"; exit 1; }

as_root () {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

find_browser () {
  local candidate
  if [ -n "${BEEMESH_CHROMIUM:-}" ]; then
    [ -x "$BEEMESH_CHROMIUM" ] || die "BEEMESH_CHROMIUM=$BEEMESH_CHROMIUM is not an executable"
    printf '%s' "$BEEMESH_CHROMIUM"
    return 0
  fi
  for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    [ -x "$candidate" ] && { printf '%s' "$candidate"; return 0; }
  done
  candidate="$(command -v chromium || command -v chromium-browser || true)"
  [ -n "$candidate" ] && { printf '%s' "$candidate"; return 0; }
  return 1
}

install_packages () {
  command -v apt-get >/dev/null 2>&1 || die "no chromium and no apt-get to install it: install Chromium and set BEEMESH_CHROMIUM to its path"
  if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
    die "no chromium, and installing it needs root: run 'sudo apt-get install chromium' or set BEEMESH_CHROMIUM"
  fi
  say "installing ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: update once, then install.
  if ! as_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/tmp/beemesh-apt-browser.log 2>&1; then
    as_root apt-get update -qq >>/tmp/beemesh-apt-browser.log 2>&1 || true
    as_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>/tmp/beemesh-apt-browser.log 2>&1 \
      || { tail -n 20 /tmp/beemesh-apt-browser.log >&2; die "apt-get install ${PACKAGES[*]} failed (log: /tmp/beemesh-apt-browser.log)"; }
  fi
}

if ! find_browser; then
  install_packages
  find_browser || die "installed ${PACKAGES[*]} but found no chromium executable"
fi
printf '\n'
