#!/usr/bin/env bash
# `make image`: the OCI image of diskguard for the ECS daemon service — nothing but the
# static musl binary of the release tarball and the CA bundle AWS's TLS needs, built with
# `docker import` (no Dockerfile, no base image, no registry):
#   entrypoint /usr/bin/diskguard, command `run`; labels org.opencontainers.image.version
#   and .revision (the release's version and git commit) and diskguard.keep=true, which
#   every container of the image inherits, so diskguard never evicts itself.
# Tags diskguard:<version> and diskguard:latest in the Docker that DOCKER_HOST names, and
# saves the image as <dist>/diskguard-<version>-image.tar (for `docker load`, then a push
# to ECR). Prints the image reference.
# Usage: scripts/image.sh [RELEASE-TARBALL]   (default: `scripts/release.sh` builds one)
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
dist=${DISKGUARD_DIST:-$target_dir/dist}
ca_bundle=/etc/ssl/certs/ca-certificates.crt

if ! command -v docker >/dev/null; then
    echo "image: docker is missing; run scripts/test-deps.sh (docker.io)" >&2
    exit 1
fi
if [[ ! -s $ca_bundle ]]; then
    echo "image: $ca_bundle is missing; install ca-certificates" >&2
    exit 1
fi

tarball=${1:-}
if [[ -z $tarball ]]; then
    tarball=$(scripts/release.sh | grep -- '-x86_64-linux\.tar\.gz$')
fi
[[ -f $tarball ]] || { echo "image: no release tarball at '$tarball'" >&2; exit 1; }
# Its one directory, diskguard-0.1.0-1a2b3c4d5e6f-x86_64-linux, names the version.
name=$(tar -tzf "$tarball" | awk -F/ 'NR == 1 { print $1 }')
version=${name#diskguard-}
version=${version%-x86_64-linux}
revision=${version##*-}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
tar -xzf "$tarball" -C "$stage"
root=$stage/rootfs
install -D -m 0755 "$stage/$name/diskguard" "$root/usr/bin/diskguard"
install -D -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/tmp" "$root/etc/diskguard"
chmod 1777 "$root/tmp"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

image=diskguard:$version
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$root" -cf - . |
    docker import \
        --change 'ENTRYPOINT ["/usr/bin/diskguard"]' \
        --change 'CMD ["run"]' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL org.opencontainers.image.title=diskguard" \
        --change "LABEL org.opencontainers.image.version=$version" \
        --change "LABEL org.opencontainers.image.revision=$revision" \
        --change "LABEL diskguard.keep=true" \
        - "$image" >/dev/null
docker tag "$image" diskguard:latest
mkdir -p "$dist"
docker save "$image" -o "$dist/diskguard-$version-image.tar"
echo "$image"
