"""The Marketing Hub flow clicked through in a real browser (Chromium, headless).

Everything behind the page is real: the local API running the functions of template.yaml, the
Meta sandbox's consent page over HTTP, Postgres with row-level security, moto. Each test signs in
to a fresh tenant, so tests never see each other's data.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from sandbox.whatsapp_send import SendControl

# Loaded as a plugin (its fixtures), so its helpers are imported inside the tests: importing it
# here first would keep pytest from rewriting its asserts.
pytest_plugins = ["tests.fixtures_whatsapp"]
pytestmark = pytest.mark.e2e
WEBHOOK_SETTINGS = ("url", "enabled", "statuses", "batch_size", "numbers")

DEMO_ACCOUNT = "act_1000000000000001"  # the sandbox's "Ventas Demo 01": 30 campaigns
TIMEOUT = 20_000  # ms; the machine is shared, Meta round trips go through the sandbox


def sign_in(page: Page, tenant_id: str, role: str = "admin") -> None:
    page.goto("/")
    page.get_by_test_id("login-tenant").fill(tenant_id)
    page.get_by_test_id(f"login-{role}").click()
    expect(page.get_by_test_id("user-box")).to_contain_text(tenant_id)


def open_marketing(page: Page) -> None:
    page.get_by_test_id("sidebar-marketing").click()
    expect(page.get_by_test_id("view-marketing")).to_be_visible()


def go_to_consent(page: Page, sandbox_url: str) -> None:
    page.get_by_test_id("connect-meta").click()
    page.wait_for_url(f"{sandbox_url}/**", timeout=TIMEOUT)
    expect(page.get_by_test_id("consent-dialog")).to_be_visible()


def test_admin_connects_meta_picks_an_account_sees_stats_and_creates_a_rule(
        page: Page, hub, tenant_id):
    from tests.fixtures_whatsapp import WhatsAppSandbox

    # Given a demo admin of a fresh tenant, with a WhatsApp number of its own in the sandbox
    wa = WhatsAppSandbox(hub.sandbox.url)
    whatsapp = wa.create_account(user_id="10001")
    wa.http.close()
    phone_id = whatsapp["phone_number_ids"][0]
    sign_in(page, tenant_id, "admin")

    # When they open Marketing and connect Meta through the sandbox's consent page
    open_marketing(page)
    expect(page.get_by_test_id("token-status")).to_have_text("Sin conectar")
    expect(page.get_by_test_id("connect-meta")).to_have_text("Conectar Meta Ads")
    go_to_consent(page, hub.sandbox.url)
    page.get_by_test_id("consent-approve").click()

    # Then they are back on the page with the success message and an active connection
    page.wait_for_url(re.compile(r"/crm/marketing"), timeout=TIMEOUT)
    expect(page.get_by_test_id("flash")).to_contain_text("Meta Ads conectado exitosamente",
                                                        timeout=TIMEOUT)
    expect(page.get_by_test_id("token-status")).to_have_text("Activa")

    # When they pick an ad account and connect it
    account = page.get_by_test_id(f"account-{DEMO_ACCOUNT}")
    expect(account).to_contain_text("Ventas Demo 01", timeout=TIMEOUT)
    page.get_by_test_id(f"connect-account-{DEMO_ACCOUNT}").click()
    expect(page.get_by_test_id("connect-result")).to_contain_text("conectada", timeout=TIMEOUT)

    # Then the stats panel shows Leads and ROI for the synced campaigns
    stats = page.get_by_test_id("marketing-stats")
    expect(stats).to_contain_text("Leads")
    expect(stats).to_contain_text("ROI")
    expect(page.get_by_test_id("stat-leads")).to_have_text(re.compile(r"^[1-9]\d*$"),
                                                           timeout=TIMEOUT)
    expect(page.get_by_test_id("stat-roi")).to_have_text(re.compile(r"^-?[\d.,]+\s%$"))
    expect(page.get_by_test_id("campaigns-table").locator("tbody tr").first).to_be_visible()

    # When they open HSM, connect their WhatsApp number and create the follow-up rule
    page.get_by_test_id("sidebar-hsm").click()
    expect(page.get_by_test_id("view-hsm")).to_be_visible()
    page.get_by_test_id("load-wabas").click()
    page.get_by_test_id(f"wa-connect-{phone_id}").click()
    expect(page.get_by_test_id("flash")).to_contain_text("conectado", timeout=TIMEOUT)
    expect(page.get_by_test_id("templates-table")).to_contain_text("lead_followup_es")

    page.get_by_test_id("new-rule").click()
    page.get_by_test_id("rule-name").fill("Follow-up Leads 24h")
    page.get_by_test_id("rule-trigger").select_option("lead_followup")
    page.get_by_test_id("rule-delay").fill("24")
    page.get_by_test_id("rule-template").select_option(label="lead_followup_es (es)")
    page.get_by_test_id("rule-save").click()

    # Then they see the confirmation, and the rule is stored for their tenant only
    expect(page.get_by_test_id("flash")).to_have_text("Regla creada exitosamente")
    expect(page.get_by_test_id("rules-list")).to_contain_text("Follow-up Leads 24h")
    rules = page.evaluate("""async () => {
        const s = JSON.parse(sessionStorage.getItem("mh_session"));
        const r = await fetch("/crm/marketing/hsm/rules",
                              {headers: {Authorization: `Bearer ${s.token}`}});
        return r.json();
    }""")["rules"]
    assert [(r["name"], r["trigger_type"], r["delay_hours"], r["template_name"]) for r in rules] \
        == [("Follow-up Leads 24h", "lead_followup", 24, "lead_followup_es")]


def test_cancelling_consent_shows_the_cancelled_message(page: Page, hub, tenant_id):
    sign_in(page, tenant_id, "admin")
    open_marketing(page)
    go_to_consent(page, hub.sandbox.url)

    page.get_by_test_id("consent-cancel").click()

    page.wait_for_url(re.compile(r"/crm/marketing"), timeout=TIMEOUT)
    flash = page.get_by_test_id("flash")
    expect(flash).to_contain_text("Conexión cancelada", timeout=TIMEOUT)
    expect(flash).to_have_attribute("data-kind", "warn")
    expect(page.get_by_test_id("token-status")).to_have_text("Sin conectar")


def test_declining_a_permission_shows_the_missing_permissions(page: Page, hub, tenant_id):
    sign_in(page, tenant_id, "admin")
    open_marketing(page)
    go_to_consent(page, hub.sandbox.url)

    page.get_by_test_id("scope-ads_read").uncheck()
    page.get_by_test_id("consent-approve").click()

    page.wait_for_url(re.compile(r"/crm/marketing"), timeout=TIMEOUT)
    flash = page.get_by_test_id("flash")
    expect(flash).to_contain_text("Faltan permisos en Meta: ads_read", timeout=TIMEOUT)
    expect(flash).to_have_attribute("data-kind", "error")
    expect(page.get_by_test_id("token-status")).to_have_text("Sin conectar")


def test_a_member_cannot_connect_meta(page: Page, hub, tenant_id):
    sign_in(page, tenant_id, "member")
    open_marketing(page)

    # The page offers no connect controls to a member, and says why
    expect(page.get_by_test_id("admin-only-note")).to_be_visible()
    expect(page.get_by_test_id("connect-meta")).to_be_hidden()
    expect(page.get_by_test_id("ad-accounts-card")).to_be_hidden()
    # ...and the API refuses a member who calls it anyway, with the contract's error body
    answer = page.evaluate("""async () => {
        const s = JSON.parse(sessionStorage.getItem("mh_session"));
        const r = await fetch("/crm/auth/meta/url",
                              {headers: {Authorization: `Bearer ${s.token}`}});
        return {status: r.status, body: await r.json()};
    }""")
    assert answer["status"] == 403
    assert answer["body"]["error"]["code"] == "forbidden"
    # The member still sees the results panel (a member route)
    expect(page.get_by_test_id("marketing-stats")).to_contain_text("Leads")


def test_run_dispatch_now_and_watch_the_delivery_statuses(page: Page, hub, whatsapp_setup):
    from tests.fixtures_whatsapp import insert_rule

    # Given a tenant with a connected sender and the follow-up rule, and the sandbox delivering
    # signed status webhooks of that sender's messages to the local API
    tenant = whatsapp_setup.tenant_id
    insert_rule(tenant, name="Follow-up Leads 24h", delay_hours=24)
    webhooks = SendControl(hub.sandbox.url)
    before = webhooks.webhook_log()["config"]
    webhooks.configure_webhooks(url=f"{hub.api_url}/crm/webhooks/meta", enabled=True,
                                numbers=[whatsapp_setup.phone_number_id])
    try:
        sign_in(page, tenant, "admin")  # the first sign-in seeds the tenant's demo leads
        page.get_by_test_id("sidebar-hsm").click()
        expect(page.get_by_test_id("rules-list")).to_contain_text("Follow-up Leads 24h")

        # When the admin runs the dispatch now
        page.get_by_test_id("dev-dispatch").click()

        # Then messages went out, and the log follows them to "Leído" (read)
        expect(page.get_by_test_id("dispatch-result")).to_contain_text(
            re.compile(r"Enviados: [1-9]"), timeout=TIMEOUT)
        statuses = page.get_by_test_id("logs-table").get_by_test_id("log-status")
        expect(statuses.first).to_be_visible()
        expect(statuses.filter(has_text=re.compile(r"^(Pendiente|Enviado|Entregado)$"))) \
            .to_have_count(0, timeout=30_000)
        expect(statuses.filter(has_text="Leído").first).to_be_visible()
        assert statuses.count() > 0
    finally:
        webhooks.configure_webhooks(**{k: before[k] for k in WEBHOOK_SETTINGS})
        webhooks.close()


def test_leads_from_lead_forms_are_listed_with_their_whatsapp_welcome(
        page: Page, hub, whatsapp_setup):
    from devstack.queues import deliver_all
    from shared.hsm.planner import wake
    from tests.fixtures_whatsapp import insert_lead
    from tests.test_hsm_lead_created import add_lead_created_rule

    # Given a tenant whose lead_created rule welcomed a lead that came from a lead form
    tenant = whatsapp_setup.tenant_id
    add_lead_created_rule(tenant)
    insert_lead(tenant, name="Rocío Navarro", phone="+34612000111", lead_source="meta_lead_ads",
                meta_leadgen_id="9990001", meta_form_id="8880001", meta_page_id="7770001",
                meta_ad_id="2301")
    wake(tenant)
    # The workers run their own event loop: off this thread, where Playwright runs one.
    with ThreadPoolExecutor(1) as pool:
        delivered = pool.submit(deliver_all, queues={"HsmDispatchQueue"}).result()
    assert delivered["HsmDispatchQueue"] >= 1

    # When a member opens the HSM view
    sign_in(page, tenant, "member")
    page.get_by_test_id("sidebar-hsm").click()

    # Then the rule and the lead are listed, the lead with its WhatsApp message sent
    expect(page.get_by_test_id("rules-list")).to_contain_text("Bienvenida al llegar un lead",
                                                              timeout=TIMEOUT)
    expect(page.get_by_test_id("rules-list")).to_contain_text("tras 0 min")
    table = page.get_by_test_id("lead-ads-table")
    expect(table).to_contain_text("Rocío Navarro", timeout=TIMEOUT)
    row = table.locator("tr", has_text="Rocío Navarro")
    expect(row).to_contain_text("8880001")
    expect(row.get_by_test_id("lead-ad-followup")).to_contain_text("Enviado")


def test_the_rule_form_offers_the_lead_created_trigger_in_minutes(page: Page, hub,
                                                                  whatsapp_setup):
    sign_in(page, whatsapp_setup.tenant_id, "admin")
    page.get_by_test_id("sidebar-hsm").click()
    page.get_by_test_id("new-rule").click()
    page.get_by_test_id("rule-name").fill("Bienvenida")
    page.get_by_test_id("rule-trigger").select_option("lead_created")
    expect(page.get_by_test_id("rule-delay")).to_have_value("0")
    page.get_by_test_id("rule-delay").fill("5")
    page.get_by_test_id("rule-save").click()

    expect(page.get_by_test_id("flash")).to_contain_text("Regla creada", timeout=TIMEOUT)
    expect(page.get_by_test_id("rules-list")).to_contain_text("tras 5 min")
