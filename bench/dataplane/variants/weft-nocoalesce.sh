# shellcheck shell=bash
# Variant 'weft-nocoalesce': the weft variant with weft-fwd --no-coalesce (for measuring what that feature buys).
WEFT_FWD_ARGS="--no-coalesce ${WEFT_FWD_ARGS:-}"
# shellcheck source=variants/weft.sh
source "$HERE/variants/weft.sh"
