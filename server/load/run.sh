#!/usr/bin/env bash
# The server load run of docs/benchmarks.md: 100,000 demo contacts, then wrk with 32
# connections for 20 s each against get, query and create, on loopback.
# Needs wrk (Debian package `wrk`) and a release build of the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${PRISMDB_BIN:-${CARGO_TARGET_DIR:-target}/release/prismdb}"
contacts="${CONTACTS:-100000}"
seconds="${SECONDS_PER_RUN:-20}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
team="$(python3 -c 'import uuid; print(uuid.uuid4())')"
export KEY="load-key"
printf '{"%s": {"team": "%s", "user": "%s", "groups": [], "role": "admin"}}' \
  "$KEY" "$team" "$(python3 -c 'import uuid; print(uuid.uuid4())')" > "$work/keys.json"
"$bin" load --data "$work/data" --team "$team" --contacts "$contacts"
"$bin" serve --data "$work/data" --listen 127.0.0.1:0 --keys "$work/keys.json" \
  > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" && break; sleep 0.1; done
url="$(sed -n 's/^prismdb listening on //p' "$work/serve.out")"
export BASE_PATH="/v2/prism/$team"
export IDS_FILE="$work/ids.txt"
curl -s -H "Authorization: Bearer $KEY" "$url$BASE_PATH/contact?limit=1000&properties=name" |
  python3 -c 'import json, sys; print("\n".join(r["id"] for r in json.load(sys.stdin)["data"]))' > "$IDS_FILE"
for script in get query create; do
  echo "== $script"
  wrk -t2 -c32 -d"${seconds}s" --latency -s "server/load/$script.lua" "$url"
done
