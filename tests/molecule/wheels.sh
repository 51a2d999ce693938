# Sourced (in a subshell) by tests/molecule/build-image.sh: the golden images' wheel download, reused as it is.
# shellcheck shell=bash
#
# Defines WHEEL_TARGET (the guests' Python tags) and fetch_wheels NAME LOCK DIR, which prints DIR/NAME-<hash>,
# the wheels of LOCK downloaded once per lock content and target (images/build-base.sh). The cloud image of
# the Molecule scenarios then uses the very wheel directory a golden image build made, and the other way round.
# Both live inline in images/build-base.sh, which is an input of the golden images' content hash, like
# images/lib.sh: moving them into a library would rebuild both golden images (about 13 minutes each here,
# docs/images.md) for no change in them. So they are read out of build-base.sh; a change there that this
# extraction no longer finds stops the build with a message (tests/unit/test_molecule_image.py checks it too).
_wheels_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=images/lib.sh
source "$_wheels_repo/images/lib.sh"
eval "$(sed -n -e '/^WHEEL_TARGET=(/,/^unset _glibc$/p' -e '/^fetch_wheels() {$/,/^}$/p' \
  "$_wheels_repo/images/build-base.sh")"
if ! declare -F fetch_wheels >/dev/null || [ -z "${WHEEL_TARGET+set}" ]; then
  echo "tests/molecule/wheels.sh: WHEEL_TARGET or fetch_wheels not found in images/build-base.sh" >&2
  return 1
fi
unset _wheels_repo
