# The commands README.md starts with. `make test` is also what CI runs (.ci/run).
.PHONY: run test deps lint unit bench

# The agent in the foreground. Off ECS it runs in local mode against the local Docker root.
run:
	cargo run --release -- run

# Installs the test peers when missing, then every check and test.
test: deps lint
	cargo test --all-targets

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
