#!/usr/bin/env bash
# The monitoring role's Prometheus alert rules, evaluated by Prometheus' own rule engine:
# `promtool check rules` on every rules file of roles/monitoring/files/rules/, then `promtool test rules`
# on tests/monitoring/*.test.yml. promtool comes from scripts/fetch-promtool (the pinned Debian 12 package,
# extracted into .build/promtool; never the prometheus package installed on this machine).
#   tests/monitoring/promtool-test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/fetch-promtool
promtool=$(bash scripts/fetch-promtool --print-path)
rules=(roles/monitoring/files/rules/*.yml)
tests=(tests/monitoring/*.test.yml)
[ -e "${rules[0]}" ] || { echo "promtool-test: no rules file in roles/monitoring/files/rules" >&2; exit 1; }
[ -e "${tests[0]}" ] || { echo "promtool-test: no tests/monitoring/*.test.yml" >&2; exit 1; }
"$promtool" check rules "${rules[@]}"
# Every rules file must be tested by some test file.
for r in "${rules[@]}"; do
  grep -qF "roles/monitoring/files/rules/$(basename "$r")" "${tests[@]}" \
    || { echo "promtool-test: $r is in no tests/monitoring/*.test.yml's rule_files" >&2; exit 1; }
done
(cd tests/monitoring && "$promtool" test rules "${tests[@]##*/}")
echo "promtool-test: $("$promtool" --version 2>&1 | head -n 1 | cut -d' ' -f1-3): ${#rules[@]} rules file(s), ${#tests[@]} test file(s) passed"
