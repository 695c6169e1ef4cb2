"""Admission campaign monitor: one Airflow DAG per stage of every plan in include/plans/.

Thin on purpose: the factory in the `admission` package builds the DAGs from
the plan files; adding a campaign means adding a YAML file, not code.
"""

from admission.adapter.factory import build_all

globals().update(build_all())
