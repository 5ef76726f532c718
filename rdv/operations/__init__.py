"""Operations: what runs the pipeline on a machine, beside it and not inside a job.

The supervisor that restarts jobs, the runner that plans and starts them (`rdv up`, `rdv down`,
`rdv status`), the local broker, process handling, the model configs' add and start, `make dist`,
and the two data operations that work on the tables from outside the jobs (forget, quarantine
replay). Operations use the core (rdv) and start the jobs; no job imports from here.
"""
