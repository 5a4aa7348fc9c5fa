#!/usr/bin/env bash
# `make userdata`: writes what `diskguard userdata` renders for the example values into
#   cloud-config/flatcar-ecs-node.yaml   (--format cloud-config)
#   cloud-config/flatcar-ecs-node.ign    (--format ignition)
#   cloud-config/al2023-ecs-node.yaml    (--format cloud-init, Amazon Linux 2023)
# and into the UserData of packaging/cloudformation/diskguard-node.yaml (one branch per
# AmiFamily: cloud-config for Flatcar, cloud-init for Amazon Linux 2023), where the cluster,
# release URL and sha256 become the stack's parameters (${ClusterName}, ${ReleaseUrl},
# ${ReleaseSha256}; every other "${" is escaped as "${!" for Fn::Sub).
# --check: change nothing; exit 1 naming each file that differs (tests/userdata.rs runs this).
# DISKGUARD_BIN: the binary to run (default target/debug/diskguard).
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ ${1:-} == --check ]] && check=1
bin=${DISKGUARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/diskguard}
if [[ ! -x $bin ]]; then
    echo "render-userdata: $bin is missing; run cargo build (or set DISKGUARD_BIN)" >&2
    exit 1
fi

# Example values: stable, so the files change only when the rendering does.
CLUSTER=prod
URL=https://releases.example.com/diskguard/diskguard-0.1.0-1a2b3c4d5e6f-x86_64-linux.tar.gz
SHA=9f2c4e1b7a3d5f60817263544536271809a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4
# Placeholders the template's parameters replace; each valid for the flag it stands in.
P_CLUSTER=DISKGUARD_PARAM_CLUSTER_NAME
P_URL=https://diskguard-param.invalid/RELEASE_URL
P_SHA=5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e

TEMPLATE=packaging/cloudformation/diskguard-node.yaml
BEGIN='        # BEGIN user data'
END='        # END user data'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" userdata --format cloud-config --cluster "$CLUSTER" --release-url "$URL" --sha256 "$SHA" \
    >"$work/flatcar-ecs-node.yaml"
"$bin" userdata --format ignition --cluster "$CLUSTER" --release-url "$URL" --sha256 "$SHA" \
    >"$work/flatcar-ecs-node.ign"
"$bin" userdata --format cloud-init --cluster "$CLUSTER" --release-url "$URL" --sha256 "$SHA" \
    >"$work/al2023-ecs-node.yaml"

# The template: everything up to the BEGIN marker, the UserData property choosing by
# AmiFamily, each rendered text (Fn::Sub-escaped, placeholders to parameters, indented into its
# block scalar), the END marker and the rest.
for format in cloud-config cloud-init; do
    "$bin" userdata --format "$format" --cluster "$P_CLUSTER" --release-url "$P_URL" --sha256 "$P_SHA" |
        sed -e 's/\${/${!/g' -e "s|$P_CLUSTER|\${ClusterName}|g" -e "s|$P_URL|\${ReleaseUrl}|g" \
            -e "s|$P_SHA|\${ReleaseSha256}|g" |
        sed -e 's/^\(.\)/                \1/' >"$work/userdata-$format.txt"
done
if ! grep -q "^$BEGIN" "$TEMPLATE" || ! grep -qxF "$END" "$TEMPLATE"; then
    echo "render-userdata: $TEMPLATE lacks the '# BEGIN user data' / '# END user data' markers" >&2
    exit 1
fi
awk -v begin="$BEGIN" -v end="$END" -v flatcar="$work/userdata-cloud-config.txt" \
    -v al2023="$work/userdata-cloud-init.txt" '
    index($0, begin) == 1 {
        print
        print "        UserData:"
        print "          Fn::If:"
        print "            - IsFlatcar"
        print "            - Fn::Base64: !Sub |"
        while ((getline line < flatcar) > 0) print line
        print "            - Fn::Base64: !Sub |"
        while ((getline line < al2023) > 0) print line
        skipping = 1
        next
    }
    $0 == end { skipping = 0 }
    !skipping { print }
' "$TEMPLATE" >"$work/diskguard-node.yaml"

differ=0
for pair in "flatcar-ecs-node.yaml:cloud-config/flatcar-ecs-node.yaml" \
    "flatcar-ecs-node.ign:cloud-config/flatcar-ecs-node.ign" \
    "al2023-ecs-node.yaml:cloud-config/al2023-ecs-node.yaml" \
    "diskguard-node.yaml:$TEMPLATE"; do
    new=$work/${pair%%:*}
    old=${pair#*:}
    if ! cmp -s "$new" "$old"; then
        if [[ $check -eq 1 ]]; then
            echo "render-userdata: $old differs from what diskguard userdata renders; run 'make userdata'" >&2
            diff -u "$old" "$new" | head -20 >&2 || true
            differ=1
        else
            cp "$new" "$old"
            echo "render-userdata: wrote $old"
        fi
    fi
done
exit "$differ"
