#!/usr/bin/env bash
# Instructions per call of `acc/shard` (benches/acc.rs) under callgrind: what accounting's
# events and records cost a worker, counted rather than timed (the same on any machine
# of one kind, whatever else runs on it).
#
#   bash benches/instructions.sh
#
# Needs valgrind. Prints, for each of the three benchmarks, the instructions of one call
# through the shard (`DialogDriver::call`, inclusive, its messages made and handled), and
# for the records those of `Accountant::on_event` per event (three events a call: the
# INVITE's transaction, the BYE's request, the dialog's record); then the writer's
# encoding of one record into its CSV and JSON lines (`csv_and_json_lines`, per record).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$(cargo bench -p siplb-benches --bench acc --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Sum of the inclusive cost and the count of calls to functions whose name ends in $2.
per_call() {
    awk -v want="$2" '
        /^c?fn=\(/ {
            id = $0; sub(/^c?fn=\(/, "", id); sub(/\).*/, "", id)
            name = $0; sub(/^c?fn=\([0-9]+\) ?/, "", name)
            if (name != "") names[id] = name
            if ($0 ~ /^cfn=/) callee = names[id]
            next
        }
        /^calls=/ {
            split($0, c, /[= ]/); n = c[2]
            if (substr(callee, length(callee) - length(want) + 1) == want) {
                getline; calls += n; cost += $2
            }
            next
        }
        END { printf "%.0f instructions each (%d calls)\n", calls ? cost / calls : 0, calls }
    ' "$1"
}
for b in call_without_accounting call_with_events call_with_records; do
    valgrind --tool=callgrind --callgrind-out-file="$out/$b" "$bin" --bench --profile-time 2 \
        "acc/shard/$b\$" > /dev/null 2>&1
    echo "acc/shard/$b: DialogDriver::call: $(per_call "$out/$b" 'DialogDriver::call')"
done
echo "acc/shard/call_with_records: Accountant::on_event: $(per_call "$out/call_with_records" 'Accountant::on_event')"
# The writer's side: both lines of a record (`acc/encode/call_one_pass`, a call's three records).
valgrind --tool=callgrind --callgrind-out-file="$out/encode" "$bin" --bench --profile-time 2 \
    'acc/encode/call_one_pass$' > /dev/null 2>&1
echo "acc/encode/call_one_pass: csv_and_json_lines: $(per_call "$out/encode" 'encode::csv_and_json_lines')"
