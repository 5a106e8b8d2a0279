#!/usr/bin/env bash
# Install Debian packages that are missing, quietly, waiting for another apt-get or dpkg that
# holds the locks (common on fresh VMs running unattended-upgrades) instead of failing at once.
# usage: scripts/apt-install.sh pkg [pkg...]   (as root, or through sudo)
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
# DPkg::Lock::Timeout covers dpkg's lock and, since apt 1.9.11, the lists lock of `update`.
lock=(-o DPkg::Lock::Timeout="${APT_LOCK_TIMEOUT:-300}")
echo "setup: installing Debian packages: ${missing[*]}"
log="${QUIETLY_LOG_DIR:-.cache/logs}/apt.log"
mkdir -p "$(dirname "$log")"
if ! { $SUDO apt-get "${lock[@]}" update -qq &&
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${lock[@]}" install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
  echo "setup: FAILED: apt-get install ${missing[*]} (last lines of $log):" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
