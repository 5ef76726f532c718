#!/usr/bin/env bash
# The comparison tables, recomputed from the Delta tables: once, or with --every "15 minutes".
source "$(dirname "${BASH_SOURCE[0]}")/submit.sh"
submit rdv-compare compare.py "${RDV_MEMORY:-2g}" "$@"
