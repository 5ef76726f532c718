#!/usr/bin/env bash
# The features job: rdv.raw to canonical feature records on rdv.features, and rdv.quarantine.
source "$(dirname "${BASH_SOURCE[0]}")/submit.sh"
submit rdv-features featurize.py "${RDV_MEMORY:-2g}"
