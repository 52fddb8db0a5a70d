#!/usr/bin/env bash
# Resident memory of siplb across phases of calls: siplb on examples/siplb.toml, two sipp
# gateways (examples/sipp/uas.xml on 127.0.0.1:5081 and :5082), then for each PHASE a sipp
# caller of PHASE calls at 2,000 calls/s; VmRSS is printed when the phase ends and 45 s later,
# once its transactions and dialogs are gone. Memory kept per call shows as an idle figure
# that grows from phase to phase.
#
#   benches/soak_rss.sh target/release/siplb 120000 240000 240000
#
# Run from the repository; uses 127.0.0.1:5060, 5070, 5081, 5082 and a folder in /tmp.
set -euo pipefail
bin=$(realpath "$1")
shift
repo=$(pwd)
work=$(mktemp -d /tmp/siplb-soak.XXXXXX)
sed -e "s#/tmp/siplb.ctl#$work/ctl#" examples/siplb.toml > "$work/siplb.toml"
cd "$work"
"$bin" --config siplb.toml > siplb.log 2>&1 &
siplb=$!
gateways=()
for port in 5081 5082; do
  sipp -sf "$repo/examples/sipp/uas.xml" -i 127.0.0.1 -p "$port" -aa -bind_local -nostdin \
    -buff_size 1048576 -timeout 3600s > "uas$port.out" 2>&1 &
  gateways+=($!)
done
trap 'kill "${gateways[@]}" "$siplb" 2>/dev/null; wait' EXIT
sleep 2
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$siplb/status"; }
echo "logs in $work"
echo "start: $(rss)"
for calls in "$@"; do
  timeout $((calls / 2000 + 120)) sipp 127.0.0.1:5060 -sf "$repo/examples/sipp/uac.xml" \
    -inf "$repo/examples/sipp/accounts.csv" -i 127.0.0.1 -p 5070 -bind_local -nostdin \
    -buff_size 1048576 -r 2000 -rp 1000 -m "$calls" -l 100000 -recv_timeout 10000 \
    > uac.out 2>&1 || echo "sipp failed: $work/uac.out"
  echo "after $calls calls: $(rss)"
  sleep 45
  echo "45 s later: $(rss)"
done
