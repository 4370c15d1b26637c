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
  "${files[@]}"
