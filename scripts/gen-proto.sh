#!/usr/bin/env bash
# Generate the `meshplane` Python package (messages, gRPC stubs, mypy stubs) from protos/ into $1.
set -euo pipefail
out=${1:-.}
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
cd "$root"
mapfile -t files < <(find protos -name '*.proto' | sort)
mkdir -p "$out"
"$py" -m grpc_tools.protoc -I protos \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  --plugin=protoc-gen-mypy="$root/.venv/bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$root/.venv/bin/protoc-gen-mypy_grpc" \
  "${files[@]}" 2> >(grep -v "^Writing mypy" >&2)
# Every generated folder is a package (empty __init__.py) and typed (py.typed at the root).
find "$out/meshplane" -type d ! -name __pycache__ -exec sh -c 'test -f "$1/__init__.py" || : > "$1/__init__.py"' _ {} \;
: > "$out/meshplane/py.typed"
