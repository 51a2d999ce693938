#!/usr/bin/env bash
# ansible-test sanity on a scratch copy laid out as ansible_collections/aihow/hyperscaler (ansible-test
# requires that path). Only tracked files are copied, as CI sees them.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/aihow/hyperscaler"
mkdir -p "$dest"
git ls-files -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -cf - -T - | tar -xf - -C "$dest"
# ansible-test bootstraps pip in its venvs with a script from ci-files.testing.ansible.com, which is not
# reachable here; the standard library's ensurepip installs the same pip offline.
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
for version in 24.2 25.0; do
  printf '%s\n' "import ensurepip, sys" "sys.exit(ensurepip._main(['--upgrade', '--default-pip']) or 0)" \
    > "$cache/get_pip_${version//./_}.py"
done
cd "$dest"
git init -q && git add -A && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity
"$repo/.venv/bin/ansible-test" sanity --python 3.11 --requirements --color no "$@"
