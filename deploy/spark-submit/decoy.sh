#!/usr/bin/env bash
# The decoy: every feature record into Delta archive, validated into data_quality.
source "$(dirname "${BASH_SOURCE[0]}")/submit.sh"
submit rdv-decoy decoy.py "${RDV_MEMORY:-2g}"
