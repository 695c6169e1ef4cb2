"""Campaign monitor for first-grade e-enrollment: the domain package.

Everything except :mod:`admission.adapter` is plain Python (pandas, GX,
SQLAlchemy) and runs without Airflow.
"""
