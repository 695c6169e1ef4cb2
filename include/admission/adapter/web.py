"""The campaign page: a FastAPI app the Airflow API server serves under ``/admission`` (plugins/admission_campaign.py).

Who sees what:

- Plugin apps are not behind Airflow's login by themselves: every admin route here depends on the API server's
  own ``get_user`` (the UI's session cookie or a bearer token), so a request without a valid login gets 401 (the
  HTML page: a redirect to the login form) and never data.
- A login is not enough: a campaign's personal data (cards, recipients, the report, the Data Docs) is shown to a
  user the auth manager authorizes to *run the campaign's day* — ``is_authorized_dag(method="POST",
  access_entity=RUN, details=DagDetails(id="run_day_<plan>"))``. With the simple auth manager that is the roles
  User, Op and Admin; Viewer is refused (403). With the FAB auth manager, a role needs «can create» on «DAG Runs»
  and «can edit» on «DAG:run_day_<plan>», so access is granted per campaign.
- Officials without an Airflow account open ``/admission/o/<token>`` from their digest: a signed, expiring,
  read-only view of the organizations the letter is about (admission.report.links), with the same card.

What the page shows comes from the project's store and output folder (admission.report.dashboard); nothing
here reads the data folder.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode, urljoin, urlsplit

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from admission.layout import DATA_DOCS, Layout
from admission.templating import render as render_template

PREFIX = "/admission"

# What a browser may do with the plugin's pages. The campaign page needs nothing but its own inline styles and
# images: no script at all, not framed by another site. Values from the data folder are escaped by the
# templates; the policy is the second wall if one ever is not.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
# Great Expectations' Data Docs print unexpected cell values unescaped and load scripts from CDNs: served on the
# Airflow origin as active content, a planted «E-mail» cell would run with the admin's session. ``sandbox``
# gives the page an opaque origin and no scripts, so it can read nothing of Airflow's; no request leaves the
# page (no CDN), so what shows is the static HTML GX wrote.
DOCS_CSP = ("sandbox; default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cross-Origin-Opener-Policy": "same-origin"}


def _variable(name: str, default: str | None = None) -> str | None:
    """An Airflow Variable as the API server sees it (environment, secrets backends, then the metadata DB).

    The core model, not the Task SDK's: outside a task the SDK reads no metadata DB (a Variable set in the UI
    would be missed), and the API server is not a task."""
    from airflow.models import Variable  # noqa: AIR311

    return Variable.get(name, default_var=default)  # noqa: AIR311


def output_dir() -> Path:
    default = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "admission"
    return Path(_variable("admission_output_dir") or default).expanduser()


def store_url() -> str:
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models import Connection  # noqa: AIR311 (as above: the API server is not a task)

    try:
        uri = Connection.get_connection_from_secrets("admission_db").get_uri()  # noqa: AIR311
    except AirflowNotFoundException:
        return f"sqlite:///{Layout(output_dir()).default_store}"
    return uri.replace("postgres://", "postgresql://", 1) if uri.startswith("postgres://") else uri


async def _user(request: Request):
    """The logged-in user (Airflow's session cookie or a bearer token), else 401."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


User = Annotated[object, Depends(_user)]


def _plans():
    from admission.plan import load_valid_plans

    return {p.id: p for p in load_valid_plans()[0]}


def campaign_allowed(user, plan) -> bool:
    """May ``user`` see the campaign's personal data: may they run its day (``run_day_<plan>``)?"""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                                details=DagDetails(id=f"run_day_{plan.slug}"), user=user)


NO_ACCESS = ("нет доступа к данным кампании: нужна роль, которой разрешен запуск дня кампании (DAG run_day_<план>) — "
             "User, Op или Admin; обратитесь к администратору Airflow")


def _allowed_plans(user) -> dict:
    """The valid plans whose campaign ``user`` may see; 403 when none."""
    plans = {pid: p for pid, p in _plans().items() if campaign_allowed(user, p)}
    if not plans:
        raise HTTPException(403, NO_ACCESS)
    return plans


def _day(plan_id: str | None, date: str | None, user):
    """The chosen plan and day (default: the first plan with stored results, its newest day)."""
    from admission.report import dashboard

    if not _plans():
        raise HTTPException(404, "нет ни одного действующего плана в include/plans")
    plans = _allowed_plans(user)
    url = store_url()
    if plan_id is None:
        plan_id = next((p for p in sorted(plans) if dashboard.result_days(url, p)), sorted(plans)[0])
    plan = plans.get(plan_id)
    if plan is None:
        raise HTTPException(404, f"нет плана «{plan_id}»")
    days = dashboard.result_days(url, plan.id)
    if date:
        try:
            as_of = dt.date.fromisoformat(date)
        except ValueError as exc:
            raise HTTPException(422, "дата: ожидается ГГГГ-ММ-ДД") from exc
    else:
        as_of = days[-1] if days else None
    return plans, plan, days, as_of, url


def _registry(plan, as_of: dt.date):
    """The day's registry from its snapshot (for ИНН): None when there is no snapshot."""
    from admission.inputs import snapshot

    try:
        return snapshot.load(output_dir(), plan.id, as_of, datasets=[]).data.frames["organizations"]
    except snapshot.NoSnapshot:
        return None


def _report_folder(plan_id: str, day: str, user) -> Path:
    try:
        dt.date.fromisoformat(day)
    except ValueError as exc:
        raise HTTPException(404) from exc
    if plan_id not in _allowed_plans(user):
        raise HTTPException(404)
    return Layout(output_dir()).reports(plan_id) / day


def _inside(folder: Path, rel: str) -> Path:
    """``folder/rel`` when it is a file inside ``folder`` (no ``..``, no symlink out), else 404."""
    root = folder.resolve()
    path = (folder / rel).resolve()
    if root not in path.parents or not path.is_file():
        raise HTTPException(404)
    return path


def create_app() -> FastAPI:
    """The app; the domain modules (pandas, the store) are imported by the routes, not when plugins load."""
    app = FastAPI(title="Мониторинг приема в 1-й класс", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        """Every response (pages, files, errors, the login redirect) says how a browser may treat it."""
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, plan: str | None = None, date: str | None = None, q: str | None = None,
                   org: str | None = None, mooyso: str | None = None):
        from fastapi import status

        try:
            user = await _user(request)
        except HTTPException as exc:
            if exc.status_code not in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
                raise
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=303)
        from admission.report import dashboard
        from admission.report.ranking import trend_text

        try:
            plans, chosen, days, as_of, url = _day(plan, date, user)
        except HTTPException as exc:
            if exc.status_code != status.HTTP_403_FORBIDDEN:
                raise
            return HTMLResponse(render_template("web/message.html.j2", {"title": "Нет доступа", "text": NO_ACCESS}),
                                status_code=403)
        if days and as_of not in days:  # another plan chosen with the previous plan's date: its newest day
            as_of = days[-1]
        context = {"plans": sorted(plans), "plan": chosen, "days": days, "as_of": as_of, "q": q or "",
                   "prefix": PREFIX, "trigger": f"/dags/run_day_{chosen.slug}", "stages": [], "municipalities": [],
                   "run_date": min(max(_today({chosen.id: chosen}), chosen.campaign.start), chosen.campaign.end),
                   "members": None, "mooyso": mooyso, "hits": None, "org": None, "chart": "", "links": {},
                   "mailbox": None, "day_mail": None, "ranking": [], "trend_text": None, "approvals": [],
                   "can_review": True, "review_plan": chosen.id,
                   "link": lambda **kw: f"{PREFIX}/?" + urlencode({"plan": chosen.id,
                                                                   "date": as_of.isoformat() if as_of else "", **kw})}
        if as_of is not None:
            day = dashboard.Day.load(url, chosen, as_of)
            context |= {"stages": dashboard.stages(day), "municipalities": dashboard.municipalities(day),
                        "chart": dashboard.progress_svg(dashboard.progress(url, chosen, as_of)),
                        "mailbox": dashboard.mailbox(url, day), "day_mail": dashboard.day_mail(url, day),
                        "ranking": dashboard.mooyso_ranking(url, day), "trend_text": trend_text,
                        "approvals": dashboard.approvals(day)}
            if mooyso:
                context["members"] = dashboard.members(day, mooyso)
            if q:
                context["hits"] = dashboard.search(day, _registry(chosen, as_of), q)
            if org:
                context["org"] = dashboard.organization(url, day, org)
            context["links"] = _links(chosen, as_of)
        html = render_template("web/campaign.html.j2", context)
        return HTMLResponse(html)

    @app.get("/api/overview")
    def overview(user: User, plan: str | None = None, date: str | None = None) -> dict:
        from admission.report import dashboard

        _, chosen, days, as_of, url = _day(plan, date, user)
        if as_of is None:
            return {"plan": chosen.id, "days": [], "as_of": None, "stages": [], "municipalities": []}
        day = dashboard.Day.load(url, chosen, as_of)
        return {"plan": chosen.id, "days": days, "as_of": as_of, "stages": dashboard.stages(day),
                "municipalities": dashboard.municipalities(day)}

    @app.get("/api/municipalities/{mooyso_id}")
    def members(mooyso_id: str, user: User, plan: str | None = None, date: str | None = None) -> list:
        from admission.report import dashboard

        _, chosen, _, as_of, url = _day(plan, date, user)
        return dashboard.members(dashboard.Day.load(url, chosen, as_of), mooyso_id) if as_of else []

    @app.get("/api/organizations")
    def organizations(user: User, q: Annotated[str, Query(min_length=1, max_length=200)], plan: str | None = None,
                      date: str | None = None) -> list:
        from admission.report import dashboard

        _, chosen, _, as_of, url = _day(plan, date, user)
        if as_of is None:
            return []
        return dashboard.search(dashboard.Day.load(url, chosen, as_of), _registry(chosen, as_of), q)

    @app.get("/api/organizations/{org_id}")
    def organization(org_id: str, user: User, plan: str | None = None, date: str | None = None) -> dict:
        from admission.report import dashboard

        _, chosen, _, as_of, url = _day(plan, date, user)
        found = dashboard.organization(url, dashboard.Day.load(url, chosen, as_of), org_id) if as_of else None
        if found is None:
            raise HTTPException(404, f"нет результатов организации «{org_id}» на эту дату")
        return found

    @app.get("/api/export.csv")
    def export_csv(user: User, plan: str | None = None, date: str | None = None) -> Response:
        """The day's statuses per organization × stage with timeliness (admission.report.export): a stable CSV for
        BI and Excel Power Query, behind the same authorization as the page."""
        from admission.report import export

        _, chosen, _, as_of, url = _day(plan, date, user)
        body = export.to_csv(export.rows(url, chosen, as_of) if as_of else [])
        name = f"admission_{chosen.id}_{as_of.isoformat() if as_of else 'none'}.csv"
        return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/export.json")
    def export_json(user: User, plan: str | None = None, date: str | None = None) -> list:
        """The same rows as JSON objects."""
        from admission.report import export

        _, chosen, _, as_of, url = _day(plan, date, user)
        return export.rows(url, chosen, as_of) if as_of else []

    @app.get("/files/{plan_id}/{day}/{name}")
    def report_file(plan_id: str, day: str, name: str, user: User) -> FileResponse:
        """The day's report workbook and chart (only those two names)."""
        if name not in (f"report_{plan_id}_{day}.xlsx", f"progress_{day}.png"):
            raise HTTPException(404)
        return FileResponse(_inside(_report_folder(plan_id, day, user), name), filename=name)

    @app.get("/docs/{plan_id}/{day}/{rel:path}")
    def data_docs(plan_id: str, day: str, rel: str, user: User) -> FileResponse:
        """The report's copy of the GX Data Docs (static HTML with its own relative links), sandboxed
        (``DOCS_CSP``): shown, never run."""
        return FileResponse(_inside(_report_folder(plan_id, day, user) / DATA_DOCS, rel),
                            headers={"Content-Security-Policy": DOCS_CSP})

    @app.post("/run")
    def run_day(request: Request, user: User, plan: Annotated[str, Form()], date: Annotated[str, Form()],
                dry_run: Annotated[str | None, Form()] = None) -> RedirectResponse:
        """Run a campaign day by hand from the page: ``run_day_<plan>`` with ``as_of``, the judged date in the run's
        id (``manual__day_<date>__<time>``) and note, so the admin finds the day in the DAG's runs. Triggered
        through Airflow's own API with the caller's credentials: Airflow decides whether they may."""
        _same_origin(request)
        chosen = _allowed_plans(user).get(plan)
        if chosen is None:
            raise HTTPException(404, f"нет плана «{plan}»")
        try:
            as_of = dt.date.fromisoformat(date)
        except ValueError as exc:
            raise HTTPException(422, "дата: ожидается ГГГГ-ММ-ДД") from exc
        if not chosen.covers(as_of):
            raise HTTPException(422, f"{as_of:%d.%m.%Y} вне кампании {chosen.id} ({chosen.campaign.start:%d.%m.%Y}–"
                                     f"{chosen.campaign.end:%d.%m.%Y})")
        dag_id, run_id, note = manual_run(chosen, as_of, bool(dry_run))
        token = request.cookies.get("_token") or request.headers.get("authorization", "").removeprefix("Bearer ")
        answer = _core_api("POST", f"/api/v2/dags/{dag_id}/dagRuns", token,
                           {"dag_run_id": run_id, "logical_date": None, "note": note,
                            "conf": {"as_of": as_of.isoformat(), "dry_run": bool(dry_run)}})
        if answer.status_code >= 400:
            raise HTTPException(answer.status_code, f"Airflow не запустил {dag_id}: {answer.text[:300]}")
        return RedirectResponse(f"/dags/{dag_id}/runs/{quote(run_id)}", status_code=303)

    @app.post("/review")
    def review(request: Request, user: User, plan: Annotated[str, Form()], org: Annotated[str, Form()],
               message_id: Annotated[str, Form()], state: Annotated[str, Form()],
               comment: Annotated[str, Form()] = "") -> RedirectResponse:
        """A person's review of an answer by mail: принято / есть замечания / отклонено, with a comment. Kept with
        every earlier one; the intake DAG mails it to the organization (with a fresh form when not accepted) on
        its next run; a stage whose plan says ``review: true`` counts it."""
        from admission.checks.stages import REVIEW_STATES
        from admission.store import record_review

        _same_origin(request)
        chosen = _allowed_plans(user).get(plan)
        if chosen is None:
            raise HTTPException(404, f"нет плана «{plan}»")
        if state not in REVIEW_STATES:
            raise HTTPException(422, "итог проверки: принято, есть замечания или отклонено")
        if state != "принято" and not comment.strip():
            raise HTTPException(422, "замечания обязательны, если ответ не принят: их получит организация")
        reviewer = getattr(user, "get_name", lambda: "")() or "администратор"
        record_review(store_url(), chosen.id, org[:64], message_id, state, comment.strip(), str(reviewer))
        return RedirectResponse(f"{PREFIX}/?" + urlencode({"plan": chosen.id, "org": org}) + "#org", status_code=303)

    @app.get("/o/{token}", response_class=HTMLResponse)
    def shared(token: str, org: str | None = None) -> HTMLResponse:
        """An official's view from a digest's link: the organizations the link names (a МООУСО: with its schools),
        on the newest judged day, read-only; no Airflow login, no other organization, no admin links."""
        from admission.report import dashboard, links

        plans = _plans()
        try:
            scope = links.read_token(token[:20_000], _page_keys(), _today(plans))
        except links.BadLink as exc:
            return _message("Ссылка не открывается", str(exc), 403)
        plan = plans.get(scope.plan_id)
        url = store_url()
        days = dashboard.result_days(url, plan.id) if plan else []
        if not days:
            return _message("Нет данных", "по этой кампании пока нет результатов проверки", 404)
        day = dashboard.Day.load(url, plan, days[-1])
        shown = dashboard.scoped_members(day, scope.orgs)
        card = None
        if org is not None:
            if org not in {o["org_id"] for o in shown}:
                return _message("Нет такой организации", "эта ссылка показывает только организации из письма", 404)
            card = dashboard.organization(url, day, org)
        context = {"plan": plan, "as_of": day.as_of, "stages": plan.ordered_stages, "members": shown, "org": card,
                   "expires": scope.expires, "here": f"{PREFIX}/o/{token}"}
        return HTMLResponse(render_template("web/shared.html.j2", context),
                            headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})

    return app


def manual_run(plan, as_of: dt.date, dry_run: bool) -> tuple[str, str, str]:
    """(DAG id, run id, note) of a day run by hand: the judged date where the admin looks for it."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    note = f"День кампании {as_of:%d.%m.%Y}" + (" — пробный запуск, письма не отправляются" if dry_run else "") + \
        " (запущено со страницы кампании)"
    return f"run_day_{plan.slug}", f"manual__day_{as_of.isoformat()}__{stamp}", note


def _same_origin(request: Request) -> None:
    """A form posted from another site is refused (the browser says where it came from in ``Origin``)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise HTTPException(403, "запрос не со страницы кампании")


def _core_api(method: str, path: str, token: str, body: dict):
    """Airflow's own REST API on this API server, as the caller (their token)."""
    import requests
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or f"http://127.0.0.1:{conf.get('api', 'port', fallback='8080')}"
    return requests.request(method, urljoin(base.rstrip("/") + "/", path.lstrip("/")), json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


def _message(title: str, text: str, status_code: int) -> HTMLResponse:
    return HTMLResponse(render_template("web/message.html.j2", {"title": title, "text": text}),
                        status_code=status_code, headers={"Cache-Control": "no-store"})


def _page_keys():
    """The installation's form keys as the tasks read them (Variable ``admission_form_secret``, else the key file
    in the output folder): the page links are signed with a key derived from them."""
    from admission.mail.forms import form_keys

    configured = _variable("admission_form_secret") or _variable("admission_form_key")
    return form_keys(Layout(output_dir()).form_key, configured)


def _today(plans: dict) -> dt.date:
    """Today where the campaigns are (the first plan's time zone): a link's last day ends at its midnight."""
    first = next(iter(plans.values()), None)
    return dt.datetime.now(first.tz).date() if first else dt.date.today()


def _links(plan, as_of: dt.date) -> dict[str, str]:
    """Links to the day's report files served through the page, for those that exist."""
    folder = Layout(output_dir()).report(plan.id, as_of)
    day = as_of.isoformat()
    out = {}
    for key, name in (("workbook", f"report_{plan.id}_{day}.xlsx"), ("chart", f"progress_{day}.png")):
        if (folder / name).is_file():
            out[key] = f"{PREFIX}/files/{quote(plan.id)}/{day}/{quote(name)}"
    index = next((folder / DATA_DOCS).rglob("local_site/index.html"), None) if (folder / DATA_DOCS).is_dir() else None
    if index is not None:
        out["docs"] = f"{PREFIX}/docs/{quote(plan.id)}/{day}/{quote(index.relative_to(folder / DATA_DOCS).as_posix())}"
    return out
