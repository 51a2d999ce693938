# Sourced (in a subshell) by tests/molecule/build-image.sh: the golden images' wheel download, reused as it is.
# shellcheck shell=bash
#
# images/lib.sh defines WHEEL_TARGET (the guests' Python tags) and fetch_wheels NAME LOCK DIR, which prints
# DIR/NAME-<hash>, the wheels of LOCK downloaded once per lock content and target. The cloud image of the
# Molecule scenarios then uses the very wheel directory a golden image build made, and the other way round.
# shellcheck source=images/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/images/lib.sh"
