"""The pipeline's jobs: thin entry points that spark-submit runs, one file per job.

| job | file | queries |
| --- | --- | --- |
| features | featurize.py | features |
| score-<model> | score.py | score-<model> |
| rendezvous | decide.py | rendezvous |
| decoy | decoy.py | decoy, data-quality |
| record | record.py | record |
| compare | compare.py | none (batch) |

Two files are named for what the job does and not as the job is: spark-submit puts a script's own
folder first on the module path, so a jobs/features.py or jobs/rendezvous.py would stand in for
the packages `features` and `rendezvous` that the jobs import. `pipeline.py` and `recording.py`
run several jobs' queries in one application, as `rdv up` does on a small machine.
"""
