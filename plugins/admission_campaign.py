"""The campaign page in the Airflow UI: a FastAPI app under /admission and a navigation entry.

Thin on purpose: the app is built in admission.adapter.web (which puts every route behind the API server's
login) from admission.report.dashboard (plain queries of the project's store).
"""

from admission.adapter.web import PREFIX, create_app
from airflow.plugins_manager import AirflowPlugin


class AdmissionCampaignPlugin(AirflowPlugin):
    name = "admission_campaign"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "Кампания приема в 1-й класс"}]
    external_views = [{"name": "Кампания приема в 1-й класс", "href": f"{PREFIX}/", "destination": "nav",
                       "url_route": "admission_campaign", "category": "browse"}]
