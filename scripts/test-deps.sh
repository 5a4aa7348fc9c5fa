#!/usr/bin/env bash
# Installs the real peers that diskguard's integration tests start themselves
# (private dockerd, etcd, moto_server, loop-mounted ext4). Idempotent: when
# everything is present it prints nothing and returns in well under 2 s.
# Run as root on Debian 12. It never starts a service: each test owns its peers.
# Delivery (units, user data, release, sysext) adds: ignition (ignition-validate),
# debootstrap (the systemd image the install tests boot), squashfs-tools (the sysext),
# musl-tools and the rustup target x86_64-unknown-linux-musl (the static release).
# The Prometheus endpoint adds: prometheus (promtool and the server that scrapes it).
# Amazon Linux 2023 user data adds: cloud-init (`cloud-init schema`, the validator the
# userdata tests run on this machine; the systemd test image has its own copy that applies it).
# --release: only what scripts/release.sh needs (`make release` runs this first, so a fresh
# machine's first command can be `make release`).
# --image: that, and what scripts/image.sh needs: docker.io and ca-certificates (`make image`).
# A Docker that does not answer is started with systemctl where systemd runs; otherwise it
# says how to start one.
set -euo pipefail

release_only=0
image=0
case ${1:-} in
    --release) release_only=1 ;;
    --image) release_only=1 image=1 ;;
    "") ;;
    *)
        echo "usage: scripts/test-deps.sh [--release | --image]" >&2
        exit 2
        ;;
esac

VENV="${DISKGUARD_TEST_VENV:-/opt/diskguard-test-venv}"
# Pinned to a major so a moto release cannot change the wire format under us.
MOTO_SPEC='moto[server]>=5,<6'

# docker.io: dockerd 20.10 + /usr/bin/docker (the CLI the tests use), and it
# pulls in containerd and runc. mount: mount/umount/losetup. util-linux:
# setpriv (parent-death signal for peers). e2fsprogs: mkfs.ext4.
# docker-registry: a private registry on loopback, to pull images by digest only.
# openssl: the certificates of the etcd TLS tests.
# prometheus: promtool (check metrics, check rules) and a real Prometheus that scrapes
# diskguard's /metrics in tests/prometheus.rs (its service is not started, as above).
# cloud-init: only its schema validator runs here; see below for why it stays off at boot.
# systemd-journal-remote: writes real journal files from export text, for the journald
# vacuum test (tests/journald_vacuum.rs); its service is not started, as above.
APT_PKGS=(docker.io busybox-static etcd-server e2fsprogs util-linux mount tar coreutils systemd docker-registry
    ignition debootstrap squashfs-tools musl-tools binutils openssl prometheus cloud-init
    systemd-journal-remote)
# scripts/release.sh: musl-gcc (aws-lc-sys's C for the musl target), mksquashfs (the sysext),
# readelf (the static-link check), tar and gzip (the tarball), sha256sum, git (the version).
RELEASE_PKGS=(musl-tools squashfs-tools binutils tar gzip coreutils git)
if [[ $release_only -eq 1 ]]; then
    APT_PKGS=("${RELEASE_PKGS[@]}")
fi
if [[ $image -eq 1 ]]; then
    APT_PKGS+=(docker.io ca-certificates)
fi

installed=()

# --release needs root only when it has something to install (apt_install says so).
if [[ $release_only -eq 0 && $(id -u) -ne 0 ]]; then
    echo "test-deps.sh: must run as root (it uses apt-get and writes $VENV)" >&2
    exit 1
fi

missing_pkgs() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "test-deps.sh: must run as root to apt-get install $*" >&2
        exit 1
    fi
    if [[ $apt_updated -eq 0 ]]; then
        echo "test-deps.sh: apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    echo "test-deps.sh: apt-get install $*"
    # docker.io and etcd-server would start system daemons on install; the
    # tests run private ones, so forbid service starts for this install only.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        added_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    [[ $added_policy -eq 1 ]] && rm -f "$policy"
    [[ $rc -eq 0 ]] || exit "$rc"
    installed+=("$@")
}

mapfile -t need < <(missing_pkgs "${APT_PKGS[@]}")
if [[ ${#need[@]} -gt 0 ]]; then
    apt_install "${need[@]}"
    # Installed for its validator only: this machine must not run cloud-init at its next
    # boot (it would take the host for a cloud instance). A machine that already had
    # cloud-init keeps it as it was.
    if printf '%s\n' "${need[@]}" | grep -qx cloud-init; then
        touch /etc/cloud/cloud-init.disabled
    fi
fi

# The static release target. rustup is the machine's one toolchain manager; when it is not
# on PATH (a root shell without ~/.cargo/env) the hint says so instead of failing late.
release_tools() {
    local target=x86_64-unknown-linux-musl
    if ! command -v rustup >/dev/null 2>&1 && [[ -f $HOME/.cargo/env ]]; then
        . "$HOME/.cargo/env"
    fi
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup target list --installed | grep -qx "$target"; then
            echo "test-deps.sh: rustup target add $target"
            rustup target add "$target" >/dev/null
            installed+=("rust target $target")
        fi
    else
        echo "test-deps.sh: rustup not found; the release needs: rustup target add $target" >&2
        exit 1
    fi
}

if [[ $release_only -eq 1 ]]; then
    release_tools
    if [[ $image -eq 1 ]] && ! docker info >/dev/null 2>&1; then
        if [[ -z ${DOCKER_HOST:-} && -d /run/systemd/system ]]; then
            echo "test-deps.sh: starting docker.service"
            systemctl start docker.service
        else
            echo "test-deps.sh: no Docker answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}; start dockerd (systemctl start docker, or dockerd &) or set DOCKER_HOST" >&2
            exit 1
        fi
    fi
    if [[ ${#installed[@]} -gt 0 ]]; then
        echo "test-deps.sh: installed: ${installed[*]}"
    fi
    exit 0
fi

# A venv needs both the venv module and ensurepip; Debian's own python3 has
# the first but not the second until python3-venv is installed, while a
# pyenv python on PATH usually has both.
python_can_venv() {
    "$1" -c 'import venv, ensurepip' >/dev/null 2>&1
}

# -x follows the venv's python symlink, so a venv whose interpreter is gone
# counts as missing and is rebuilt.
if [[ ! -x $VENV/bin/moto_server || ! -x $VENV/bin/python ]]; then
    py=$(command -v python3 || true)
    if [[ -z $py ]] || ! python_can_venv "$py"; then
        if [[ -n $(missing_pkgs python3 python3-venv) ]]; then
            apt_install python3 python3-venv
        fi
        py=/usr/bin/python3
    fi
    if ! python_can_venv "$py"; then
        echo "test-deps.sh: $py cannot create a venv even after installing python3-venv" >&2
        exit 1
    fi
    echo "test-deps.sh: creating $VENV with $MOTO_SPEC (python: $py)"
    # A half-made venv from an interrupted run would otherwise stay broken.
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC"
    installed+=("$VENV ($MOTO_SPEC)")
fi

# Python tools that share moto's venv: cfn-lint and parliament for
# scripts/validate-packaging.sh, cbor2 (with moto's botocore) for the Smithy
# RPC v2 CBOR proxy in tests/support/aws/cw_proxy.py. Looked up by module name
# without importing, so the everything-present path stays fast.
PY_PKGS=('cfn-lint>=1,<2' 'parliament>=1.6,<2' 'cbor2>=5.6,<7')
PY_MODULES=(cfnlint parliament cbor2)
if ! "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' "${PY_MODULES[@]}"; then
    echo "test-deps.sh: installing ${PY_PKGS[*]} into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PKGS[@]}"
    installed+=("$VENV (${PY_PKGS[*]})")
fi

release_tools

if [[ ${#installed[@]} -gt 0 ]]; then
    echo "test-deps.sh: installed: ${installed[*]}"
fi
