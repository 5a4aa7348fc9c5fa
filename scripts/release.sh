#!/usr/bin/env bash
# `make release`: a static x86_64 binary (musl) packed as
#   diskguard-<version>-x86_64-linux.tar.gz  (+ .sha256): the binary, diskguard.service,
#       the default config (`diskguard config defaults`) and README.md, in one directory;
#   diskguard-<version>.raw  (+ .sha256): a Flatcar systemd-sysext image (squashfs) with
#       usr/bin/diskguard, the unit, its /usr/bin drop-in, a multi-user.target drop-in
#       that upholds it, and extension-release.diskguard (ID=flatcar, SYSEXT_LEVEL=1.0).
# <version> is the crate version and the git commit, e.g. 0.1.0-1a2b3c4d5e6f, read back
# from the binary's --version so the names and the binary cannot disagree. Outside git,
# set DISKGUARD_GIT_SHA.
# Output: $DISKGUARD_DIST (default: <cargo target dir>/dist). Prints the artifact paths.
# Needs: the rustup target x86_64-unknown-linux-musl, musl-tools, squashfs-tools
# (`make release` installs them first, with `scripts/test-deps.sh --release`).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
PROFILE=${DISKGUARD_RELEASE_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-target}
dist=${DISKGUARD_DIST:-$target_dir/dist}

for tool in mksquashfs musl-gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "release: $tool is missing; run scripts/test-deps.sh --release (squashfs-tools, musl-tools)" >&2
        exit 1
    fi
done
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "release: the Rust target $TARGET is missing; run scripts/test-deps.sh --release (rustup target add $TARGET)" >&2
    exit 1
fi

# aws-lc-sys builds C; for a musl target the cc crate picks musl-gcc by itself.
cargo build --locked --profile "$PROFILE" --target "$TARGET" --bin diskguard >&2
profile_dir=$PROFILE
[[ $PROFILE == dev ]] && profile_dir=debug
bin=$target_dir/$TARGET/$profile_dir/diskguard

# A static binary has no program interpreter; refuse to ship anything else.
if readelf --program-headers "$bin" | grep -q INTERP; then
    echo "release: $bin is dynamically linked" >&2
    exit 1
fi

# "diskguard 0.1.0 (git 1a2b3c4d5e6f)" -> "0.1.0-1a2b3c4d5e6f"
line=$("$bin" --version)
if [[ ! $line =~ ^diskguard\ ([^ ]+)\ \(git\ ([^\)]+)\)$ ]]; then
    echo "release: cannot read the version from '$line'" >&2
    exit 1
fi
version="${BASH_REMATCH[1]}-${BASH_REMATCH[2]}"
if [[ ${BASH_REMATCH[2]} == unknown ]]; then
    echo "release: built outside git with no DISKGUARD_GIT_SHA: the artifacts would not say which commit they are" >&2
    exit 1
fi

mkdir -p "$dist"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# Fixed times and owners: the same commit gives the same bytes.
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

name=diskguard-$version-x86_64-linux
mkdir "$stage/$name"
install -m 0755 "$bin" "$stage/$name/diskguard"
install -m 0644 units/diskguard.service README.md "$stage/$name/"
"$bin" config defaults >"$stage/$name/diskguard.toml"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    -C "$stage" -cf - "$name" | gzip -9n >"$dist/$name.tar.gz"

raw=diskguard-$version.raw
root=$stage/sysext
lib=$root/usr/lib/systemd/system
install -D -m 0755 "$bin" "$root/usr/bin/diskguard"
install -D -m 0644 units/diskguard.service "$lib/diskguard.service"
install -D -m 0644 units/sysext/diskguard.service.d/10-sysext.conf "$lib/diskguard.service.d/10-sysext.conf"
install -D -m 0644 units/sysext/multi-user.target.d/10-diskguard.conf "$lib/multi-user.target.d/10-diskguard.conf"
mkdir -p "$root/usr/lib/extension-release.d"
# The file's name must match the image's name once installed: /etc/extensions/diskguard.raw.
printf 'ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n' \
    >"$root/usr/lib/extension-release.d/extension-release.diskguard"
rm -f "$dist/$raw"
mksquashfs "$root" "$dist/$raw" -all-root -noappend -quiet -no-progress \
    -mkfs-time "$epoch" -all-time "$epoch" >&2

(cd "$dist" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256" && sha256sum "$raw" >"$raw.sha256")
for f in "$name.tar.gz" "$name.tar.gz.sha256" "$raw" "$raw.sha256"; do
    echo "$dist/$f"
done
