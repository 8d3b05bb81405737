# shellcheck shell=bash
# Variant 'weft-single': the weft variant with weft-fwd --threads single (for measuring what that feature buys).
WEFT_FWD_ARGS="--threads single ${WEFT_FWD_ARGS:-}"
# shellcheck source=variants/weft.sh
source "$HERE/variants/weft.sh"
