#!/usr/bin/env bash
# Puts libonnxruntime.so (the independent reference runtime, and the library mbtd's `ort`
# backend opens at run time) in $MBT_ORT_DIR (default ~/.cache/mbt-edge/onnxruntime) and prints
# its path. Nothing is linked at build time: this is only for the tests, the runtime benchmark
# and trying `--backend ort` on this machine. On a board, use the vendor's libonnxruntime.
#
# The library comes from the official `onnxruntime` wheel on PyPI (a wheel is a zip; only the
# shared library is kept), pinned by version and sha256. Idempotent: does nothing when present.
#
#   export ORT_DYLIB_PATH="$(scripts/fetch-onnxruntime.sh)"
set -euo pipefail
version=1.32.0
dir="${MBT_ORT_DIR:-$HOME/.cache/mbt-edge/onnxruntime}"
lib="$dir/libonnxruntime.so.$version"
if [ -f "$lib" ]; then
  echo "$lib"
  exit 0
fi
case "$(uname -m)" in
  x86_64)
    path=a3/81/55845186c20cba59f614991f4065dea148e48eeb9749893768c85ce64327
    wheel=onnxruntime-$version-cp312-cp312-manylinux_2_28_x86_64.whl
    sha=99e1074c4b2197accd5073052a465361be17b89c093b8ffb6e6bd8f986c52df8 ;;
  aarch64)
    path=4a/8f/1e43fb994513c7c7a9c6965272ef89d963c1bd4080993a6267bf913701d1
    wheel=onnxruntime-$version-cp312-cp312-manylinux_2_28_aarch64.whl
    sha=e36c187006e7a7c8b8d6d57f1a209dd63f52430dca6c282b177718ad6b841054 ;;
  *)
    echo "fetch-onnxruntime: no onnxruntime wheel for $(uname -m); set ORT_DYLIB_PATH to a libonnxruntime.so" >&2
    exit 1 ;;
esac
for tool in curl sha256sum python3; do
  command -v "$tool" >/dev/null || { echo "fetch-onnxruntime: needs $tool" >&2; exit 1; }
done
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-onnxruntime: downloading $wheel (~28 MB) from PyPI" >&2
curl -fsSL --retry 3 -o "$tmp/$wheel" "https://files.pythonhosted.org/packages/$path/$wheel"
echo "$sha  $tmp/$wheel" | sha256sum -c --quiet - >&2
python3 - "$tmp/$wheel" "$version" "$tmp/lib" <<'EOF'
import sys, zipfile
wheel, version, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(f"onnxruntime/capi/libonnxruntime.so.{version}"))
EOF
mv "$tmp/lib" "$lib"
echo "$lib"
