# Sourced by each job's script here: how every job of the pipeline is submitted to a cluster in
# client mode, from what `make dist` built. Everything site-specific comes from the environment:
#
#   SPARK_HOME        the cluster's Spark (its bin/spark-submit is used)
#   RDV_DIST          make dist's folder (default: ../../dist beside this file)
#   RDV_PROFILE       the conf's profile (default: cluster; conf/profiles/cluster.yaml names the
#                     variables it reads in turn: RDV_KAFKA_BOOTSTRAP_SERVERS, RDV_TABLES, ...)
#   RDV_SPARK_MASTER  spark://host:7077, yarn or k8s://https://host:443 (default: yarn)
#   RDV_ENV_ARCHIVE   optional: a venv-pack archive of a Python environment with the wheel and its
#                     dependencies, sent to every executor (docs/deployment.md); without it the
#                     executors' own Python must have them
#
# The driver runs here, on the Python that runs this script's spark-submit (PYSPARK_DRIVER_PYTHON,
# else python3): the wheel must be installed there.
set -euo pipefail

DIST=${RDV_DIST:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../dist" && pwd)}
PROFILE=${RDV_PROFILE:-cluster}
MASTER=${RDV_SPARK_MASTER:-yarn}

# submit APP ENTRY MEMORY [JOB ARGUMENTS...]: one job, its driver and executors with MEMORY each.
submit() {
    local app=$1 entry=$2 memory=$3
    shift 3
    local zip=("$DIST"/rendezvous-*.zip)
    local python=()
    if [[ -n ${RDV_ENV_ARCHIVE:-} ]]; then
        python=(--archives "$RDV_ENV_ARCHIVE#environment" --conf spark.pyspark.python=./environment/bin/python)
    fi
    exec "${SPARK_HOME:?set SPARK_HOME to the cluster Spark installation}/bin/spark-submit" \
        --master "$MASTER" --deploy-mode client --name "$app" \
        --driver-memory "$memory" --executor-memory "$memory" \
        --packages "$(cat "$DIST/packages.txt")" \
        --py-files "${zip[0]}" \
        "${python[@]}" \
        "$DIST/jobs/$entry" --conf "$DIST/conf" --profile "$PROFILE" "$@"
}
