#!/usr/bin/env bash
# The one command that runs the tests (the README's test command; CI runs it too).
# Installs missing system packages, then runs every test of the workspace. Extra arguments go
# to `cargo test` (e.g. scripts/test.sh -p mbt-core).
# Slow checks are #[ignore]d and listed in the README with the command that runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/install-deps.sh
cargo test --workspace --locked "$@"
