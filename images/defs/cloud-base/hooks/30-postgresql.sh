#!/usr/bin/env bash
# mmdebstrap customize hook: PostgreSQL 15 binaries without a cluster. Args: ROOT NAME DEFS_DIR.
# postgresql-15's postinst creates the cluster 15/main in the chroot. It is dropped: the postgresql role
# creates it on the node that runs it (pg_createcluster, then its own settings), so what initdb fixes
# for good (encoding, locale, the superuser's authentication) is the role's choice, no two clones share
# a data directory or its system identifier, and the cluster does not point at the image's snakeoil
# TLS key (removed by 90-clean.sh).
set -euo pipefail
root=$1
[ -x "$root/usr/bin/pg_dropcluster" ] || { echo "30-postgresql: postgresql-common is not installed" >&2; exit 1; }
if [ -d "$root/etc/postgresql/15/main" ]; then
  chroot "$root" pg_dropcluster 15 main
fi
# The role's pg_createcluster needs nothing from the image but the packages.
rm -rf "$root/var/log/postgresql/"*
