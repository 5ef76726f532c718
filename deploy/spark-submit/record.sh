#!/usr/bin/env bash
# The recorder: every result, score, quarantined record and label into Delta, off the latency path.
source "$(dirname "${BASH_SOURCE[0]}")/submit.sh"
submit rdv-record record.py "${RDV_MEMORY:-2g}"
