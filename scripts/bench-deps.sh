#!/usr/bin/env bash
# Installs what `make footprint` needs beyond the test peers: Debian's
# prometheus-node-exporter (the agent diskguard is compared with) and binutils
# (strip, for the binary size). Idempotent: quiet and quick when both are there.
# Never starts a service: the footprint run starts its own node_exporter.
set -euo pipefail

APT_PKGS=(prometheus-node-exporter binutils)

if [[ $(id -u) -ne 0 ]]; then
    echo "bench-deps.sh: must run as root (it uses apt-get)" >&2
    exit 1
fi

need=()
for pkg in "${APT_PKGS[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || need+=("$pkg")
done
[[ ${#need[@]} -eq 0 ]] && exit 0

echo "bench-deps.sh: apt-get update"
DEBIAN_FRONTEND=noninteractive apt-get update -qq
echo "bench-deps.sh: apt-get install ${need[*]}"
# The package would start node_exporter as a system service on :9100; forbid
# service starts for this install only.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    added_policy=1
fi
rc=0
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || rc=$?
[[ $added_policy -eq 1 ]] && rm -f "$policy"
exit "$rc"
