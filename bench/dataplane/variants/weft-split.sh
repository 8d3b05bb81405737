# shellcheck shell=bash
# Variant 'weft-split': the weft variant with weft-fwd --threads per-direction (for measuring what that feature buys).
WEFT_FWD_ARGS="--threads per-direction ${WEFT_FWD_ARGS:-}"
# shellcheck source=variants/weft.sh
source "$HERE/variants/weft.sh"
