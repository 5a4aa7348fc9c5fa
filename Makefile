# The commands README.md starts with. `make test` is also what CI runs (.ci/run).
.PHONY: run test deps lint packaging unit bench release release-deps test-release userdata soak footprint simulate image

# Where `make test` puts the static release its install tests use.
TEST_DIST ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/test-dist

# The agent in the foreground. Off ECS it runs in local mode against the local Docker root.
run:
	cargo run --release -- run

# Installs the test peers when missing, then every check and test.
# AWS_EC2_METADATA_DISABLED: no test may reach the link-local IMDS address; those that
# need IMDS serve it on loopback and say so.
test: deps lint packaging test-release
	AWS_EC2_METADATA_DISABLED=true DISKGUARD_TEST_DIST=$(TEST_DIST) cargo test --all-targets

# The static binary, tarball and sysext of this commit: target/dist/diskguard-<version>-…
# Installs its build dependencies first when missing (musl-tools, squashfs-tools, the musl
# Rust target), so it can be the first command on a fresh machine.
release: release-deps
	scripts/release.sh

# What scripts/release.sh needs, installed when missing (root only then); quiet and under a
# second when all is there.
release-deps:
	scripts/test-deps.sh --release

# The OCI image for the ECS daemon service (packaging/ecs/), from the release's static binary,
# into the Docker that DOCKER_HOST names; saved as target/dist/diskguard-<version>-image.tar.
# Installs docker.io, ca-certificates and the release's build dependencies first when missing.
image:
	scripts/test-deps.sh --image
	scripts/image.sh

# The same artifacts for the tests, built without the optimiser (minutes less).
test-release: release-deps
	rm -f $(TEST_DIST)/diskguard-*
	DISKGUARD_RELEASE_PROFILE=release-test DISKGUARD_DIST=$(TEST_DIST) scripts/release.sh >/dev/null

# Regenerates cloud-config/ and the node stack's user data from `diskguard userdata`.
userdata:
	cargo build
	scripts/render-userdata.sh

# CloudFormation, IAM (cfn-lint, parliament) and the CloudWatch test peer's self-test.
packaging:
	scripts/validate-packaging.sh
	$${DISKGUARD_TEST_VENV:-/opt/diskguard-test-venv}/bin/python tests/support/aws/cw_proxy_selftest.py

deps:
	scripts/test-deps.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Pure tests only: no root, no peers, milliseconds.
unit:
	cargo test --lib

bench:
	cargo bench --bench tick

# The fleet simulation at 1,000 and 5,000 instances: the daemon's ECS machine and driver
# against a simulated control plane (tests/simulate.rs); prints the BENCHMARKS.md table.
# DISKGUARD_SIM_SEED picks the scenario. `make test` runs a 200-instance run of it.
simulate:
	cargo test --profile sim --test simulate -- --ignored --nocapture

# About 20 minutes of random image and container churn against a private dockerd while
# the agent reclaims; audits the engine's events, memory and `status` (not part of
# `make test` or CI). DISKGUARD_SOAK_SECS=90 for a smoke run.
soak: deps
	AWS_EC2_METADATA_DISABLED=true cargo test --release --test soak -- --ignored --nocapture

# diskguard's steady RSS and CPU next to node_exporter's, start to READY, binary size
# (about 7 minutes; not part of `make test` or CI). DISKGUARD_FOOTPRINT_SECS shortens it.
# It measures the binary that ships: the static release `make release` packs.
FOOTPRINT_BIN = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/x86_64-unknown-linux-musl/release/diskguard
footprint: deps
	scripts/bench-deps.sh
	cargo build --locked --release --target x86_64-unknown-linux-musl --bin diskguard
	DISKGUARD_FOOTPRINT_BIN=$(FOOTPRINT_BIN) cargo test --release --test footprint -- --ignored --nocapture
