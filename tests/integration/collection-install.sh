#!/usr/bin/env bash
# Build the collection tarball, install it offline into a scratch path, and use its plugins by FQCN
# from a directory outside the checkout (so nothing comes from the .build link).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ansible-galaxy collection build --force --output-path "$work" >/dev/null
tarball=$(ls "$work"/aihow-hyperscaler-*.tar.gz)
ansible-galaxy collection install --offline --force -p "$work/collections" "$tarball" >/dev/null 2>&1
test -f "$work/collections/ansible_collections/aihow/hyperscaler/MANIFEST.json"
cp config/minimal.yml "$work/cluster.yml"
cat > "$work/lab.cluster.yml" <<YML
plugin: aihow.hyperscaler.cluster
config: cluster.yml
YML
cat > "$work/ansible.cfg" <<CFG
[defaults]
collections_path = $work/collections
[inventory]
enable_plugins = aihow.hyperscaler.cluster
any_unparsed_is_failed = True
CFG
cd "$work"
export ANSIBLE_CONFIG="$work/ansible.cfg"
unset ANSIBLE_COLLECTIONS_PATH
# Capture first: grep -q closing the pipe early would break Ansible's output.
graph=$(ansible-inventory -i lab.cluster.yml --graph)
grep -q "hpc-compute-02" <<<"$graph"
play=$(ansible-playbook -i lab.cluster.yml aihow.hyperscaler.validate -e hyperscaler_config_file="$work/cluster.yml")
grep -q "hpc-compute-02" <<<"$play"
cli=$("$work/collections/ansible_collections/aihow/hyperscaler/scripts/hyperscaler-config" validate cluster.yml)
grep -q "valid (3 nodes)" <<<"$cli"
echo "collection: built $(basename "$tarball"), installed offline, inventory plugin + validate playbook + CLI OK"
