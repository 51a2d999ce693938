#!/usr/bin/env bash
# Runs shellcheck on every shell script of the checkout: the files git knows (tracked, plus untracked ones that are
# not ignored, as tests/fresh-machine copies them) whose name ends in .sh or .bash or whose first line is a
# sh/bash shebang, so a new script is covered without being listed here. Any finding, of any severity,
# fails. Run from the repository root, so `# shellcheck source=path/from/the/root` directives resolve; -x
# follows the sourced files. (ansible-test sanity's shellcheck test sees only *.sh, and skips some checks.)
#   tests/shellcheck.sh            every script
#   tests/shellcheck.sh --list     the scripts it would check, one a line
set -euo pipefail
cd "$(dirname "$0")/.."

scripts=()
while IFS= read -r -d '' f; do
  if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi  # deleted in the work tree, or a link
  case $f in
    *.sh|*.bash) scripts+=("$f"); continue;;
    *.j2) continue;;  # a Jinja template is shell only once rendered (its {{ }} are not shell)
  esac
  first=""
  IFS= read -r first <"$f" 2>/dev/null || true
  if [[ $first =~ ^#![[:space:]]*(/usr)?/bin/(env[[:space:]]+)?(ba|da)?sh([[:space:]]|$) ]]; then
    scripts+=("$f")
  fi
done < <(git ls-files -z --cached --others --exclude-standard)

if [ "${1:-}" = --list ]; then
  printf '%s\n' "${scripts[@]}"
  exit 0
fi
command -v shellcheck >/dev/null || { echo "shellcheck.sh: shellcheck is missing (scripts/install-deps installs it)" >&2; exit 1; }
((${#scripts[@]})) || { echo "shellcheck.sh: no shell script found (not a git checkout?)" >&2; exit 1; }
rc=0
shellcheck --external-sources --severity=style --format=gcc "${scripts[@]}" || rc=$?
if [ "$rc" = 0 ]; then
  echo "shellcheck $(shellcheck --version | sed -n 's/^version: //p'): ${#scripts[@]} scripts, no finding"
else
  echo "shellcheck.sh: findings above (fix them; a '# shellcheck disable=SCxxxx' only with its reason)" >&2
fi
exit "$rc"
