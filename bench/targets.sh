# bench/targets.sh — every benchmark states its targets and says which it met. Source it, call
# `target NAME VALUE >= GOAL` (or `<=`) for each measured figure, and `targets_summary` at the end.
TARGETS_MET=0
TARGETS_MISSED=0
TARGET_LINES=()
target() {
  local name=$1 value=$2 op=$3 goal=$4 ok verdict
  ok=$(awk -v v="$value" -v g="$goal" -v op="$op" 'BEGIN{ print (op == ">=" ? v >= g : v <= g) }')
  if [ "$ok" = 1 ]; then verdict=met; TARGETS_MET=$((TARGETS_MET + 1)); else verdict=MISSED; TARGETS_MISSED=$((TARGETS_MISSED + 1)); fi
  TARGET_LINES+=("$(printf '  %-54s %10s   target %s %-6s %s' "$name" "$value" "${op/>=/≥}" "$goal" "$verdict")")
  TARGET_LINES[-1]=${TARGET_LINES[-1]/target <=/target ≤}
}
targets_summary() {
  echo
  echo "targets:"
  printf '%s\n' "${TARGET_LINES[@]}"
  echo "targets met: $TARGETS_MET of $((TARGETS_MET + TARGETS_MISSED))"
}
