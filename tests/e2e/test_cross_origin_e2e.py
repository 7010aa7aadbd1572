"""The reference page served from a second origin (another port), as the CRM's own frontend dev
server would be, completing the Meta connect and the rule flow through CORS; and what a
newcomer meets on the page itself: one host name, Spanish messages, an APPROVED default
template, campaign figures that tell one story before an ad account is connected.

Every API answer the page receives is checked against docs/openapi.json on the way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import jsonschema
import pytest
from playwright.sync_api import Page, Response, expect

from devstack import openapi, web_origin
from devstack.template import http_routes

pytestmark = pytest.mark.e2e
DEMO_ACCOUNT = "act_1000000000000001"  # the sandbox's "Ventas Demo 01": 30 campaigns
DOCS_NUMBER = "9001"  # +34 600 000 001, the number docs/LOCAL_DEV.md names
TIMEOUT = 20_000
DOCUMENT = openapi.build_document()
ROUTES = http_routes()


@pytest.fixture(scope="module")
def web(hub) -> Iterator:
    """web/ on its own port; the stack's frontend (CORS origin, OAuth return) is that origin."""
    server = web_origin.serve(hub.api_url)
    with hub.serving_frontend(server.url):
        yield server
    server.stop()


class ApiWatch:
    """Every answer from the API's origin: its CORS grant, and its body against the document."""

    def __init__(self, api_url: str, page_origin: str):
        self.api = api_url
        self.origin = page_origin
        self.seen: list[tuple[str, str, int]] = []
        self.problems: list[str] = []

    def __call__(self, response: Response) -> None:
        request = response.request
        # The page's own calls; navigations (Meta's redirect to the callback) carry no Origin.
        if not response.url.startswith(self.api) or request.resource_type not in ("fetch",
                                                                                  "xhr"):
            return
        path = urlsplit(response.url).path
        self.seen.append((request.method, path, response.status))
        if request.method == "OPTIONS":
            return
        grant = response.headers.get("access-control-allow-origin")
        if grant != self.origin:
            self.problems.append(f"{request.method} {path}: allow-origin {grant!r}")
        self._check_schema(request.method, path, response)

    def _check_schema(self, method: str, path: str, response: Response) -> None:
        route = next((r for r in ROUTES if r.match(method, path) is not None), None)
        if route is None or response.status >= 300 or response.status == 204:
            return
        operation = DOCUMENT["paths"][route.path][route.method.lower()]
        schema = operation["responses"][str(response.status)]["content"]["application/json"][
            "schema"]
        validator = jsonschema.Draft202012Validator({**schema,
                                                     "components": DOCUMENT["components"]})
        errors = [e.message for e in validator.iter_errors(response.json())]
        if errors:
            self.problems.append(f"{method} {path}: {errors[:3]}")


def sign_in(page: Page, url: str, tenant_id: str, role: str = "admin") -> None:
    page.goto(f"{url}/")
    page.get_by_test_id("login-tenant").fill(tenant_id)
    page.get_by_test_id(f"login-{role}").click()
    expect(page.get_by_test_id("user-box")).to_contain_text(tenant_id)


def test_the_page_on_another_origin_connects_meta_and_creates_a_rule_through_cors(
        page: Page, hub, web, tenant_id):
    from tests.fixtures_whatsapp import WhatsAppSandbox

    wa = WhatsAppSandbox(hub.sandbox.url)
    phone_id = wa.create_account(user_id="10001")["phone_number_ids"][0]
    wa.http.close()
    watch = ApiWatch(hub.api_url, web.url)
    page.on("response", watch)
    assert urlsplit(web.url).port != urlsplit(hub.api_url).port

    # Signed in on the page's own origin: the sign-in is a cross-origin POST (preflighted).
    sign_in(page, web.url, tenant_id)
    assert page.url.startswith(web.url)

    # Before an ad account: the seeded leads, no rows of raw campaign ids, one story.
    page.get_by_test_id("sidebar-marketing").click()
    expect(page.get_by_test_id("token-status")).to_have_text("Sin conectar")
    expect(page.get_by_test_id("stats-pending")).to_contain_text(
        "campañas de Meta aún sin sincronizar", timeout=TIMEOUT)
    expect(page.get_by_test_id("campaigns-table").locator("tbody tr")).to_have_count(0)
    expect(page.get_by_test_id("stat-spend")).to_have_text("—")
    expect(page.get_by_test_id("stat-revenue")).not_to_contain_text("€")

    # Meta's consent page, and back to this origin (FRONTEND_URL) with the binding cookie,
    # which the API set on a credentialed cross-origin call.
    page.get_by_test_id("connect-meta").click()
    page.wait_for_url(f"{hub.sandbox.url}/**", timeout=TIMEOUT)
    page.get_by_test_id("consent-approve").click()
    page.wait_for_url(re.compile(rf"^{re.escape(web.url)}/crm/marketing"), timeout=TIMEOUT)
    expect(page.get_by_test_id("flash")).to_contain_text("Meta Ads conectado exitosamente",
                                                        timeout=TIMEOUT)
    expect(page.get_by_test_id("token-status")).to_have_text("Activa")

    # An ad account, its sync (a local job, through CORS too), and the figures in euros.
    page.get_by_test_id(f"connect-account-{DEMO_ACCOUNT}").click()
    expect(page.get_by_test_id("connect-result")).to_contain_text("campañas sincronizadas",
                                                                  timeout=TIMEOUT)
    expect(page.get_by_test_id("stat-roi")).to_have_text(re.compile(r"^-?[\d.,]+\s%$"),
                                                         timeout=TIMEOUT)
    expect(page.get_by_test_id("stat-revenue")).to_contain_text("€")
    expect(page.get_by_test_id("stats-pending")).to_be_hidden()
    rows = page.get_by_test_id("campaigns-table").locator("tbody tr")
    expect(rows.first).to_contain_text("Ventas Demo 01")
    expect(rows.first).to_contain_text(re.compile(r"Activa|En pausa|Archivada"))

    # WhatsApp: the docs' number is listed first; connect the test's own number.
    page.get_by_test_id("sidebar-hsm").click()
    page.get_by_test_id("load-wabas").click()
    expect(page.locator("[data-testid^=waba-phone-]").first).to_have_attribute(
        "data-testid", f"waba-phone-{DOCS_NUMBER}", timeout=TIMEOUT)
    page.get_by_test_id(f"wa-connect-{phone_id}").click()
    # (the flash element still holds the hidden Meta message: wait for this one's own words)
    expect(page.get_by_test_id("flash")).to_contain_text("plantillas sincronizadas",
                                                        timeout=TIMEOUT)

    # The rule form proposes an APPROVED template: saved as it is, the rule will send.
    page.get_by_test_id("new-rule").click()
    template = page.get_by_test_id("rule-template")
    expect(template.locator("option:checked")).to_have_text("lead_followup_es (es)")
    expect(page.get_by_test_id("rule-template-note")).to_be_hidden()
    page.get_by_test_id("rule-name").fill("Follow-up Leads 24h")
    page.get_by_test_id("rule-save").click()
    expect(page.get_by_test_id("flash")).to_have_text("Regla creada exitosamente")
    expect(page.get_by_test_id("rules-list")).to_contain_text("Seguimiento de leads sin contactar")

    # The same name again: the API's conflict, in Spanish.
    page.get_by_test_id("new-rule").click()
    page.get_by_test_id("rule-name").fill("Follow-up Leads 24h")
    page.get_by_test_id("rule-save").click()
    expect(page.get_by_test_id("rule-error")).to_have_text(re.compile(r"^Ya existe"))

    # Every call went to the API's origin (JSON POSTs and Authorization headers: each one
    # preflighted by the browser) and carried the page's origin as allowed.
    methods = {(method, path) for method, path, _ in watch.seen}
    assert {("POST", "/__dev/session"), ("GET", "/crm/auth/meta/url"),
            ("POST", "/crm/marketing/connect"), ("POST", "/__dev/jobs/sync"),
            ("POST", "/crm/marketing/whatsapp/connect"),
            ("POST", "/crm/marketing/hsm/rules")} <= methods
    assert watch.problems == []


def test_meta_answering_a_signed_out_page_says_what_happened(page: Page, web):
    page.goto(f"{web.url}/crm/marketing?error=invalid_state")
    expect(page.get_by_test_id("login-view")).to_be_visible()
    expect(page.get_by_test_id("login-flash")).to_contain_text(
        "La solicitud de conexión caducó")
    expect(page.get_by_test_id("login-flash")).to_contain_text("Entra de nuevo para continuar")


def test_the_api_host_by_another_name_sends_the_browser_to_its_own(page: Page, hub):
    port = urlsplit(hub.api_url).port
    page.goto(f"http://localhost:{port}/crm/marketing")
    expect(page.get_by_test_id("login-view")).to_be_visible()
    assert page.url.startswith(f"{hub.api_url}/crm/marketing")


def test_a_validation_error_is_shown_in_spanish(page: Page, hub, tenant_id):
    sign_in(page, hub.api_url, tenant_id)
    message = page.evaluate("""async () => {
        const s = JSON.parse(sessionStorage.getItem("mh_session"));
        const r = await fetch("/crm/marketing/hsm/rules", {method: "POST",
            headers: {Authorization: `Bearer ${s.token}`, "Content-Type": "application/json"},
            body: "{not json"});
        return [r.status, (await r.json()).error];
    }""")
    assert message[0] == 422
    assert message[1]["message"] == "The request body is not valid JSON."
    page.get_by_test_id("sidebar-hsm").click()
    page.get_by_test_id("new-rule").click()
    page.get_by_test_id("rule-delay").fill("0")
    page.get_by_test_id("rule-save").click()
    expect(page.get_by_test_id("rule-error")).to_have_text(
        re.compile(r"^Revisa estos datos: .*nombre"))
