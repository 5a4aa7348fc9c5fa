# The commands README.md starts with. `make test` is also what CI runs (.ci/run).
.PHONY: run test deps lint packaging unit bench

# The agent in the foreground. Off ECS it runs in local mode against the local Docker root.
run:
	cargo run --release -- run

# Installs the test peers when missing, then every check and test.
# AWS_EC2_METADATA_DISABLED: no test may reach the link-local IMDS address; those that
# need IMDS serve it on loopback and say so.
test: deps lint packaging
	AWS_EC2_METADATA_DISABLED=true cargo test --all-targets

# CloudFormation, IAM (cfn-lint, parliament) and the CloudWatch test peer's self-test.
packaging:
	scripts/validate-packaging.sh
	$${DISKGUARD_TEST_VENV:-/opt/diskguard-test-venv}/bin/python tests/support/cw_proxy_selftest.py

deps:
	scripts/test-deps.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# Pure tests only: no root, no peers, milliseconds.
unit:
	cargo test --lib

bench:
	cargo bench --bench tick
