#!/usr/bin/env bash
# The rendezvous job: requests joined with their scores, one answer each on rdv.results.
source "$(dirname "${BASH_SOURCE[0]}")/submit.sh"
submit rdv-rendezvous decide.py "${RDV_MEMORY:-2g}"
