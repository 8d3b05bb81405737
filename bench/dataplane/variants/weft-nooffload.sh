# shellcheck shell=bash
# Variant 'weft-nooffload': the weft variant with weft-fwd --no-offload (for measuring what that feature buys).
WEFT_FWD_ARGS="--no-offload ${WEFT_FWD_ARGS:-}"
# shellcheck source=variants/weft.sh
source "$HERE/variants/weft.sh"
