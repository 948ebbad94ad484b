#!/usr/bin/env bash
# Build llama-cpp-python (the `local` extra's engine) once per machine, into a wheel cache.
#
# llama-cpp-python ships on PyPI as source only: every `pip install` compiles llama.cpp
# (minutes; see docs/benchmarks.md, "First hour"). This builds a portable wheel once
# (no -march=native, no multimodal library) into $KEEL_WHEEL_CACHE (default
# ~/.cache/keel-wheels); pip then installs it in seconds in every later venv of this
# machine when that folder is on PIP_FIND_LINKS:
#
#   bash scripts/build-local-wheel.sh && PIP_FIND_LINKS=~/.cache/keel-wheels pip install -e ".[local]"
#
# A wheel already in the cache is kept (nothing is built). docs/decisions/0013-local-model-install.md
# says why Keel does not switch to a package with prebuilt binaries.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
WHEELS="${KEEL_WHEEL_CACHE:-$HOME/.cache/keel-wheels}"
mkdir -p "$WHEELS"
if ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "llama-cpp-python $VERSION is already built in $WHEELS"
else
  echo "building llama-cpp-python $VERSION once into $WHEELS (several minutes; later installs take seconds) ..."
  CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" \
    python -m pip wheel --no-deps -q -w "$WHEELS" "llama-cpp-python==$VERSION"
fi
echo "install with: PIP_FIND_LINKS=\"$WHEELS\${PIP_FIND_LINKS:+ \$PIP_FIND_LINKS}\" pip install -e \".[local]\""
