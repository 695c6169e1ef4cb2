# The project's Airflow image: the official Airflow 3.3.2 image plus the pinned runtime requirements
# and the project's own package (installed editable from /opt/airflow/project, which compose also mounts).
# Test tools (requirements-dev.txt) stay out of it.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt pyproject.toml /opt/airflow/project/
COPY --chown=airflow:root include /opt/airflow/project/include
COPY --chown=airflow:root deploy/check_secrets.py deploy/check_python.py /opt/airflow/project/deploy/
WORKDIR /opt/airflow/project
# The Python floor (deploy/check_python.py): the image refuses a base older than 3.11.13.
RUN python deploy/check_python.py --strict
RUN pip install --no-cache-dir -r requirements.txt
WORKDIR /opt/airflow
