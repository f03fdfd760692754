# Sourced by the scripts: settings every build here shares.
#
# One cargo target directory for every clone and CI run on a machine, so a fresh clone does not
# rebuild the dependencies from scratch (override with MBT_TARGET_DIR or CARGO_TARGET_DIR).
export CARGO_TARGET_DIR="${MBT_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/mbt-edge/target}}"
mkdir -p "$CARGO_TARGET_DIR"
