#!/usr/bin/env bash
# One model job: ./score.sh champion. The model is conf/models/<name>.yaml; give the job the
# memory of that file's spark.memory (RDV_MEMORY).
source "$(dirname "${BASH_SOURCE[0]}")/submit.sh"
submit rdv-score score.py "${RDV_MEMORY:-2g}" --model "${1:?usage: score.sh MODEL (conf/models/MODEL.yaml)}"
