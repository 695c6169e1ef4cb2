"""The thin layer between the domain package and Airflow: the only place that imports Airflow."""
