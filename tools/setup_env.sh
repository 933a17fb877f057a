#!/usr/bin/env bash
# Creates .venv (Python 3.11) with pinned torch/torchvision, the project's pinned dependencies,
# the project in editable mode, and detectron2. Idempotent: a stamp of the pin files' hash makes a
# second run a no-op.
#
# detectron2: if the base interpreter already imports it (a user's source build, maybe with
# CUDA), the venv sees it through --system-site-packages and it is left exactly as it is.
# Otherwise the hash-checked sal-detectron2 wheel (tools/detectron2.lock) is installed with
# `installer` (which ignores its cp310 tag) and its unusable cp310 `_C` is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
STAMP="$VENV/.vis_d2_setup"
want=$(cat requirements.txt pyproject.toml tools/detectron2.lock tools/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "[setup] $VENV is up to date"; exit 0
fi
start=$(date +%s)

system_d2=0
if "$PYTHON" -c "import detectron2, torch" >/dev/null 2>&1; then
  system_d2=1
  echo "[setup] $PYTHON already imports detectron2: using it as installed (venv with system site-packages)"
fi
if [ ! -x "$VENV/bin/python" ]; then
  if [ $system_d2 = 1 ]; then "$PYTHON" -m venv --system-site-packages "$VENV"; else "$PYTHON" -m venv "$VENV"; fi
fi
PY="$VENV/bin/python"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"vis_d2 needs Python 3.11, got {sys.version}"'

if [ $system_d2 = 1 ]; then
  # Keep the user's torch/detectron2: install everything else without touching them.
  grep -v -E '^(torch|torchvision)==' requirements.txt > "$VENV/.reqs-no-torch.txt"
  "$PY" -m pip install -q -r "$VENV/.reqs-no-torch.txt"
else
  "$PY" -m pip install -q -r requirements.txt
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e .

if "$PY" -c "import detectron2" >/dev/null 2>&1; then
  echo "[setup] detectron2 already importable in $VENV: left as it is"
else
  name=$(sed -n 's/^name=//p' tools/detectron2.lock)
  version=$(sed -n 's/^version=//p' tools/detectron2.lock)
  file=$(sed -n 's/^file=//p' tools/detectron2.lock)
  sha=$(sed -n 's/^sha256=//p' tools/detectron2.lock)
  cache=${VIS_D2_WHEEL_CACHE:-$HOME/.cache/vis_d2}
  mkdir -p "$cache"
  if [ ! -f "$cache/$file" ] || ! echo "$sha  $cache/$file" | sha256sum -c --quiet - 2>/dev/null; then
    rm -f "$cache/$file"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
      --abi none --platform any "$name==$version" -d "$cache"
  fi
  if ! echo "$sha  $cache/$file" | sha256sum -c --quiet -; then
    echo "[setup] ERROR: $cache/$file does not match the sha256 pinned in tools/detectron2.lock" >&2
    exit 1
  fi
  # installer uses the venv interpreter's own scheme, so the files land in $VENV.
  "$PY" -m installer "$cache/$file"
  rm -f "$VENV"/lib/python3.11/site-packages/detectron2/_C.cpython-310-*.so
fi
"$PY" -c "import detectron2, torch, torchvision; print('[setup] torch', torch.__version__, '| torchvision', torchvision.__version__, '| detectron2', detectron2.__version__)"
echo "$want" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - start ))s"
