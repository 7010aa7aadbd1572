// Marketing Hub reference page: plain DOM, no build step, no external assets.
// Talks to the Marketing Hub API (/crm/...) and, locally, /__dev/...: on its own origin, or on
// the origin in <meta name="marketing-hub-api"> (a frontend on another origin, through CORS).
"use strict";

(() => {
  const SESSION_KEY = "mh_session";
  const FLASH_KEY = "mh_flash";
  const $ = (id) => document.getElementById(id);
  const API = (document.querySelector('meta[name="marketing-hub-api"]') || {}).content || "";

  const state = {
    session: null,
    local: false,
    demoTenant: "demo-ventas",
    accounts: [],
    connectedAccountId: null,
    templates: [],
    logsCursor: null,
  };

  // -- texts ---------------------------------------------------------------------------------
  const TOKEN_STATUS = {
    not_connected: "Sin conectar",
    active: "Activa",
    expiring: "Por vencer: reconecta pronto",
    needs_reconnect: "Requiere reconexión",
  };
  const OAUTH_ERRORS = {
    access_denied: "Conexión cancelada: no autorizaste el acceso en Meta.",
    invalid_state: "La solicitud de conexión caducó o no corresponde a este navegador. Inténtalo de nuevo.",
    missing_scopes: "Faltan permisos en Meta",
    meta_error: "Meta no pudo completar la conexión. Inténtalo de nuevo en unos minutos.",
  };
  // Every error code of the API (and of the local /__dev routes) in Spanish: the API's own
  // `message` is English, for developers, and is never shown as it is.
  const API_ERRORS = {
    unauthorized: "Tu sesión caducó. Vuelve a entrar.",
    forbidden: "Esta acción requiere el rol de administrador.",
    not_found: "No encontrado: puede que otra persona lo haya eliminado.",
    validation_error: "Revisa los datos del formulario.",
    bad_request: "La solicitud no se pudo leer.",
    conflict: "Ya existe un elemento con esos datos (por ejemplo, una regla con ese nombre).",
    payload_too_large: "Los datos enviados son demasiado grandes.",
    unsupported_media_type: "La solicitud no se envió como JSON.",
    method_not_allowed: "Operación no permitida.",
    meta_not_connected: "Conecta primero Meta Ads.",
    meta_reconnect_required: "La conexión con Meta dejó de funcionar. Vuelve a conectar Meta Ads.",
    meta_rate_limited: "Meta está limitando las solicitudes. Inténtalo en unos minutos.",
    account_not_accessible: "Meta no permite acceder a esta cuenta con la conexión actual.",
    meta_error: "Meta no respondió. Inténtalo más tarde.",
    whatsapp_not_connected: "Conecta primero un número de WhatsApp.",
    not_available: "Esta función aún no está disponible en el entorno local.",
    internal_error: "Algo falló de nuestro lado. Inténtalo de nuevo en unos minutos.",
  };
  // Field names of the API, as the forms call them (validation_error's `details`).
  const FIELD_NAMES = {
    name: "nombre", trigger_type: "disparador", delay_hours: "horas de espera",
    template_name: "plantilla", language: "idioma", body_params: "variables de la plantilla",
    send_window: "horario", "send_window.start": "horario (desde)",
    "send_window.end": "horario (hasta)", "send_window.timezone": "zona horaria",
    enabled: "activa", account_id: "cuenta publicitaria", waba_id: "cuenta de WhatsApp",
    phone_number_id: "número de WhatsApp", tenant_id: "empresa", role: "rol", body: "datos",
    from: "desde", to: "hasta",
  };
  // Why a message was not sent (the message log's error codes).
  const SEND_ERRORS = {
    template_not_approved: "La plantilla no está aprobada por Meta",
    template_missing: "La plantilla ya no existe en Meta",
    template_mismatch: "La plantilla cambió y no coincide con la regla",
    messaging_tier_reached: "Se alcanzó el límite diario de conversaciones del número",
    no_wamid: "Meta no confirmó el envío",
    internal_error: "Error interno",
  };
  const CAMPAIGN_STATUS = {
    ACTIVE: "Activa", PAUSED: "En pausa", ARCHIVED: "Archivada", DELETED: "Eliminada",
    IN_PROCESS: "En proceso", WITH_ISSUES: "Con problemas", CAMPAIGN_PAUSED: "En pausa",
    ADSET_PAUSED: "Conjunto en pausa", PENDING_REVIEW: "En revisión", DISAPPROVED: "Rechazada",
  };
  const ACCOUNT_STATUS = {
    ACTIVE: "Activa", DISABLED: "Desactivada", UNSETTLED: "Pago pendiente",
    PENDING_RISK_REVIEW: "En revisión", PENDING_SETTLEMENT: "Liquidación pendiente",
    IN_GRACE_PERIOD: "En periodo de gracia", PENDING_CLOSURE: "Cierre pendiente",
    CLOSED: "Cerrada", ANY_ACTIVE: "Activa", ANY_CLOSED: "Cerrada",
  };
  const QUALITY = { GREEN: "alta", YELLOW: "media", RED: "baja", UNKNOWN: "sin datos" };
  const TRIGGERS = {
    lead_followup: "Seguimiento de leads sin contactar",
    lead_created: "Bienvenida al llegar un lead",
  };
  // Each trigger's delay: its field, unit, bounds and default.
  const DELAYS = {
    lead_followup: { field: "delay_hours", label: "Enviar tras (horas)", unit: "h", min: 1, max: 720, value: 24 },
    lead_created: { field: "delay_minutes", label: "Enviar tras (minutos)", unit: "min", min: 0, max: 1440, value: 0 },
  };
  const LOG_STATUS = {
    PENDING: "Pendiente", SENT: "Enviado", DELIVERED: "Entregado", READ: "Leído",
    FAILED: "Fallido", SKIPPED: "Omitido", UNKNOWN: "Desconocido",
  };
  const TEMPLATE_STATUS = {
    APPROVED: "Aprobada", PENDING: "Pendiente", REJECTED: "Rechazada", PAUSED: "Pausada",
    DISABLED: "Desactivada", IN_APPEAL: "En apelación", FLAGGED: "Marcada",
    PENDING_DELETION: "Eliminándose", DELETED: "Eliminada", LIMIT_EXCEEDED: "Límite excedido",
  };
  const LEAD_FIELDS = {
    first_name: "Nombre de pila", name: "Nombre completo", email: "Email",
    phone: "Teléfono", lead_source: "Origen", meta_ad_headline: "Titular del anuncio",
  };

  // -- helpers -------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "testid") node.setAttribute("data-testid", value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function num(value) {
    if (value === undefined || value === null || value === "") return null;
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }

  function money(value, currency) {
    const n = num(value);
    if (n === null) return "—";
    // No ad account connected yet: the amount's currency is not known.
    if (!currency) return new Intl.NumberFormat("es-ES", { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n);
    try {
      return new Intl.NumberFormat("es-ES", { style: "currency", currency: currency || "EUR" }).format(n);
    } catch (_e) {
      return `${n.toFixed(2)} ${currency || ""}`.trim();
    }
  }

  function integer(value) {
    const n = num(value);
    return n === null ? "—" : new Intl.NumberFormat("es-ES").format(n);
  }

  function percent(ratio) {
    const n = num(ratio);
    if (n === null) return "—";
    return `${new Intl.NumberFormat("es-ES", { maximumFractionDigits: 1 }).format(n * 100)} %`;
  }

  function dateTime(value) {
    if (!value) return "—";
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString("es-ES");
  }

  function show(node, visible) { node.hidden = !visible; }

  function setMessage(node, kind, text) {
    node.className = `message ${kind}`;
    node.dataset.kind = kind;
    node.textContent = text;
    node.hidden = false;
  }

  function flash(kind, text) { setMessage($("flash"), kind, text); }

  async function busy(button, work) {
    button.disabled = true;
    try { return await work(); } finally { button.disabled = false; }
  }

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || (body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || (status === 401 ? "unauthorized" : status === 403 ? "forbidden"
        : status === 404 ? "not_found" : `http_${status}`);
      this.details = error.details || [];
    }
  }

  function describe(err) {
    if (!(err instanceof ApiError)) {
      return "No se pudo contactar con la API (red, o un origen que CORS no permite).";
    }
    if (err.code === "validation_error") {
      const fields = [...new Set(err.details.map((d) => FIELD_NAMES[d.field] || d.field))];
      return fields.length ? `Revisa estos datos: ${fields.join(", ")}.` : API_ERRORS.validation_error;
    }
    return API_ERRORS[err.code] || `No se pudo completar la acción (código ${err.code}).`;
  }

  async function request(method, path, body) {
    const headers = {};
    if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(API + path, {
      method, headers, credentials: "include",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (_e) { data = null; } }
    if (!response.ok) {
      const err = new ApiError(response.status, data);
      if (response.status === 401 && path.startsWith("/crm/")) signOut(describe(err));
      throw err;
    }
    return data;
  }

  // -- session -------------------------------------------------------------------------------
  function loadSession() {
    try { return JSON.parse(sessionStorage.getItem(SESSION_KEY)); } catch (_e) { return null; }
  }

  async function signIn(role, button) {
    const tenant = $("login-tenant").value.trim() || state.demoTenant;
    $("login-error").hidden = true;
    try {
      const session = await busy(button, () => request("POST", "/__dev/session", { role, tenant_id: tenant }));
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      state.session = session;
      startApp();
    } catch (err) {
      setMessage($("login-error"), "error", describe(err));
    }
  }

  function signOut(reason) {
    sessionStorage.removeItem(SESSION_KEY);
    state.session = null;
    document.body.classList.remove("role-admin", "role-member");
    show($("app"), false);
    show($("user-box"), false);
    show($("login-view"), true);
    if (reason) setMessage($("login-error"), "error", reason);
    // Meta's answer arrived without a session here (another tab, or it expired): say what
    // happened, and keep it for after the sign-in.
    const pending = sessionStorage.getItem(FLASH_KEY);
    if (pending) {
      const { kind, text } = JSON.parse(pending);
      setMessage($("login-flash"), kind, `${text} Entra de nuevo para continuar.`);
    }
  }

  function isAdmin() { return state.session && state.session.role === "admin"; }

  // -- navigation ----------------------------------------------------------------------------
  function route() {
    const view = location.hash === "#hsm" ? "hsm" : "marketing";
    show($("view-marketing"), view === "marketing");
    show($("view-hsm"), view === "hsm");
    $("nav-marketing").classList.toggle("active", view === "marketing");
    $("nav-hsm").classList.toggle("active", view === "hsm");
    if (view === "marketing") openMarketing(); else openHsm();
  }

  function startApp() {
    const s = state.session;
    document.body.classList.toggle("role-admin", s.role === "admin");
    document.body.classList.toggle("role-member", s.role !== "admin");
    $("user-name").textContent = `${s.name || s.user_id} · ${s.tenant_id}`;
    $("user-role").textContent = s.role === "admin" ? "Administrador" : "Miembro";
    show($("login-view"), false);
    show($("login-flash"), false);
    show($("user-box"), true);
    show($("app"), true);
    const pending = sessionStorage.getItem(FLASH_KEY);
    if (pending) {
      sessionStorage.removeItem(FLASH_KEY);
      const { kind, text } = JSON.parse(pending);
      flash(kind, text);
    }
    route();
  }

  // The OAuth callback sends the browser to /crm/marketing?success=connected or ?error=<code>.
  function readOAuthOutcome() {
    const params = new URLSearchParams(location.search);
    if (!params.has("success") && !params.has("error")) return;
    let message;
    if (params.get("success") === "connected") {
      message = { kind: "success", text: "Meta Ads conectado exitosamente. Elige una cuenta publicitaria.", connected: true };
    } else {
      const code = params.get("error");
      let text = OAUTH_ERRORS[code] || `No se pudo conectar Meta (${code}).`;
      if (code === "missing_scopes") {
        text = `${text}: ${params.get("missing") || "?"}. Vuelve a conectar y acepta todos los permisos.`;
      }
      message = { kind: code === "access_denied" ? "warn" : "error", text, code };
    }
    sessionStorage.setItem(FLASH_KEY, JSON.stringify(message));
    state.justConnected = !!message.connected;
    history.replaceState(null, "", "/crm/marketing#marketing");
  }

  // -- marketing: connection -----------------------------------------------------------------
  async function openMarketing() {
    await loadTokenStatus();
    if (isAdmin() && state.justConnected) {
      state.justConnected = false;
      await loadAccounts();
    }
    await loadStats();
  }

  async function loadTokenStatus() {
    const badge = $("token-status");
    let status;
    try {
      status = await request("GET", "/crm/marketing/token-status");
    } catch (err) {
      badge.className = "badge";
      badge.textContent = err.status === 404 ? "No disponible" : describe(err);
      return;
    }
    const code = status.status || "not_connected";
    badge.className = `badge ${code}`;
    badge.dataset.status = code;
    badge.textContent = TOKEN_STATUS[code] || code;
    $("token-expires").textContent = status.expires_at ? dateTime(status.expires_at)
      : code === "not_connected" ? "—" : "No vence";
    $("token-scopes").textContent = (status.scopes || []).join(", ") || "—";
    const missing = status.missing_scopes || [];
    $("token-missing").textContent = missing.length ? missing.join(", ") : "—";
    $("connect-meta").textContent = code === "not_connected" ? "Conectar Meta Ads" : "Reconectar Meta Ads";
    show($("refresh-token"), code !== "not_connected");
  }

  async function connectMeta(button) {
    try {
      // Same-origin call with credentials: the answer sets the browser-binding cookie.
      const data = await busy(button, () => request("GET", "/crm/auth/meta/url"));
      location.assign(data.url);
    } catch (err) {
      flash("error", describe(err));
    }
  }

  async function refreshToken(button) {
    try {
      const result = await busy(button, () => request("POST", "/crm/auth/meta/refresh-tokens"));
      const ok = num(result && result.refreshed) > 0;
      const lost = num(result && result.needs_reconnect) > 0;
      flash(ok ? "success" : lost ? "error" : "warn", ok ? "Token renovado."
        : lost ? API_ERRORS.meta_reconnect_required
          : "Token revisado: Meta mantuvo su vencimiento (se renovó hace poco).");
    } catch (err) {
      flash("error", describe(err));
    }
    await loadTokenStatus();
  }

  // -- marketing: ad accounts ----------------------------------------------------------------
  async function loadAccounts(button) {
    const list = $("ad-accounts");
    try {
      const work = () => request("GET", "/crm/marketing/meta-accounts");
      const data = button ? await busy(button, work) : await work();
      state.accounts = data.accounts || [];
    } catch (err) {
      list.replaceChildren(el("li", { class: "message error", testid: "accounts-error" }, describe(err)));
      return;
    }
    show($("accounts-filter"), state.accounts.length > 8);
    renderAccounts();
  }

  function renderAccounts() {
    const filter = $("accounts-filter").value.trim().toLowerCase();
    const items = state.accounts
      .filter((a) => !filter || `${a.name} ${a.id} ${a.business_manager_name || ""}`.toLowerCase().includes(filter))
      .map((a) => {
        const connected = a.id === state.connectedAccountId;
        return el("li", { testid: `account-${a.id}`, class: connected ? "connected" : "" },
          el("div", {},
            el("strong", {}, a.name || a.id), " ",
            el("span", { class: `badge ${a.can_run_ads ? "ok" : "bad"}` },
              ACCOUNT_STATUS[a.status] || a.status || "?"),
            el("div", { class: "meta" },
              `${a.id} · ${a.business_manager_name || "Cuenta personal"} · ${a.currency || ""} · ${a.timezone || ""}`)),
          connected
            ? el("span", { class: "badge ok" }, "Conectada")
            : el("button", {
              type: "button", class: "small", testid: `connect-account-${a.id}`,
              onclick: (e) => connectAccount(a, e.currentTarget),
            }, "Conectar"));
      });
    $("ad-accounts").replaceChildren(...items);
  }

  async function connectAccount(account, button) {
    const result = $("connect-result");
    try {
      const data = await busy(button, () => request("POST", "/crm/marketing/connect", { account_id: account.id }));
      state.connectedAccountId = data.account_id || account.id;
      setMessage(result, "success", `Cuenta «${data.account_name || account.name}» conectada. Sincronizando campañas…`);
      renderAccounts();
    } catch (err) {
      setMessage(result, "error", describe(err));
      return;
    }
    if (state.local) await runSync();
    await loadStats();
    if (state.local) setMessage(result, "success", `Cuenta «${account.name}» conectada y campañas sincronizadas.`);
  }

  async function runSync(button) {
    try {
      const work = () => request("POST", "/__dev/jobs/sync");
      return button ? await busy(button, work) : await work();
    } catch (err) {
      flash("error", describe(err));
      return null;
    }
  }

  // -- marketing: stats ----------------------------------------------------------------------
  // GET /crm/marketing/stats: {campaigns: [...], totals: [{currency, ...}], unattributed}.
  // Money is grouped by currency (never summed across currencies); a null currency is what
  // the tenant has before any ad account is known.
  function campaignRows(data) {
    return (data.campaigns || []).map((c) => ({
      id: c.campaign_id,
      synced: !!c.name,
      name: c.name || c.campaign_id,
      status: c.effective_status || c.status || "",
      currency: c.currency,
      leads: num(c.leads),
      metaLeads: num(c.meta_leads),
      spend: num(c.spend),
      cpl: num(c.cost_per_lead),
      revenue: num(c.revenue),
      roi: num(c.roi),
    }));
  }

  function totalRows(data) {
    return (data.totals || []).map((t) => ({
      currency: t.currency,
      leads: num(t.leads) || 0,
      metaLeads: num(t.meta_leads) || 0,
      spend: num(t.spend) || 0,
      cpl: num(t.cost_per_lead),
      revenue: num(t.revenue) || 0,
      roi: num(t.roi),
    }));
  }

  function kpi(label, value, testid, cls, note) {
    return el("div", { class: "kpi" },
      el("div", { class: "label" }, label),
      el("div", { class: `value ${cls || ""}`, testid }, value),
      note ? el("div", { class: "note" }, note) : null);
  }

  async function loadStats() {
    let data;
    try {
      data = await request("GET", "/crm/marketing/stats");
    } catch (err) {
      $("kpis").replaceChildren(el("p", { class: "message error", testid: "stats-error" }, describe(err)));
      return;
    }
    const all = campaignRows(data || {});
    // A campaign the hub has not synced (its ad account is not connected) has no name: only
    // its CRM leads are known. Summarised below the table, not shown as a row of raw ids.
    const campaigns = all.filter((c) => c.synced);
    const pending = all.filter((c) => !c.synced);
    const totals = totalRows(data || {});
    const leads = totals.reduce((sum, t) => sum + t.leads, 0);
    const metaLeads = totals.reduce((sum, t) => sum + t.metaLeads, 0);
    // The headline money figures: the currency with the most spend (then revenue).
    const known = totals.filter((t) => t.currency)
      .sort((a, b) => (b.spend - a.spend) || (b.revenue - a.revenue));
    const main = known[0] || totals[0] || { roi: null };
    const others = known.slice(1).filter((t) => t.spend > 0 || t.revenue > 0);
    const roiClass = main.roi === null ? "" : main.roi >= 0 ? "good" : "bad";
    const noAccount = !main.currency;
    $("kpis").replaceChildren(
      kpi("Leads", integer(leads), "stat-leads", "", metaLeads ? `Meta reporta ${integer(metaLeads)}` : ""),
      kpi("Inversión", noAccount ? "—" : money(main.spend, main.currency), "stat-spend", "",
        noAccount ? "Sin cuenta publicitaria conectada" : ""),
      kpi("Costo por lead", noAccount ? "—" : money(main.cpl, main.currency), "stat-cpl"),
      kpi("Ingresos (ganados)", money(main.revenue, main.currency), "stat-revenue", "",
        noAccount && main.revenue ? "En la moneda de la cuenta publicitaria" : ""),
      kpi("ROI", percent(main.roi), "stat-roi", roiClass, main.currency ? `en ${main.currency}` : ""),
      ...others.map((t) => kpi(`ROI (${t.currency})`, percent(t.roi), `stat-roi-${t.currency}`, "",
        `Inversión ${money(t.spend, t.currency)}`)));
    $("campaigns-body").replaceChildren(...campaigns.map((c) => el("tr", { testid: `campaign-${c.id}` },
      el("td", {}, c.name), el("td", {}, CAMPAIGN_STATUS[c.status] || c.status),
      el("td", { class: "num" }, integer(c.leads)),
      el("td", { class: "num" }, money(c.spend, c.currency)),
      el("td", { class: "num" }, money(c.cpl, c.currency)),
      el("td", { class: "num" }, money(c.revenue, c.currency)),
      el("td", { class: "num" }, percent(c.roi)))));
    show($("stats-empty"), campaigns.length === 0 && pending.length === 0);
    const pendingLeads = pending.reduce((sum, c) => sum + (c.leads || 0), 0);
    $("stats-pending").textContent = pending.length
      ? `${integer(pendingLeads)} leads vienen de ${integer(pending.length)} campañas de Meta aún sin `
        + "sincronizar: conecta su cuenta publicitaria para ver la inversión y el ROI de cada una."
      : "";
    show($("stats-pending"), pending.length > 0);
    renderChart(campaigns);
  }

  // Spend against won revenue per campaign: bars read faster than the table.
  function renderChart(campaigns) {
    const box = $("stats-chart");
    const rows = campaigns.filter((c) => (c.spend || 0) > 0 || (c.revenue || 0) > 0)
      // Campaigns that brought leads first, then by spend.
      .sort((a, b) => ((b.leads > 0) - (a.leads > 0)) || ((b.spend || 0) - (a.spend || 0)))
      .slice(0, 8);
    if (!rows.length) { box.replaceChildren(); return; }
    const NS = "http://www.w3.org/2000/svg";
    const svgEl = (tag, attrs, text) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const width = 760, labelW = 230, rowH = 38, barH = 13, top = 8;
    const max = Math.max(...rows.map((r) => Math.max(r.spend || 0, r.revenue || 0)), 1);
    const scale = (v) => Math.max(1, ((v || 0) / max) * (width - labelW - 90));
    const svg = svgEl("svg", { viewBox: `0 0 ${width} ${top + rows.length * rowH}`, role: "img",
      "aria-label": "Inversión e ingresos por campaña" });
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const name = r.name.length > 32 ? `${r.name.slice(0, 31)}…` : r.name;
      svg.append(svgEl("text", { x: 0, y: y + 17, class: "axis" }, name));
      svg.append(svgEl("rect", { x: labelW, y, width: scale(r.spend), height: barH, rx: 2, class: "bar-spend" }));
      svg.append(svgEl("text", { x: labelW + scale(r.spend) + 6, y: y + 11 }, money(r.spend, r.currency)));
      svg.append(svgEl("rect", { x: labelW, y: y + barH + 2, width: scale(r.revenue), height: barH, rx: 2, class: "bar-revenue" }));
      svg.append(svgEl("text", { x: labelW + scale(r.revenue) + 6, y: y + barH + 13 }, money(r.revenue, r.currency)));
    });
    const legend = el("div", { class: "legend" },
      el("span", {}, el("span", { class: "swatch spend" }), "Inversión"),
      el("span", {}, el("span", { class: "swatch revenue" }), "Ingresos ganados"));
    box.replaceChildren(legend, svg);
  }

  // -- HSM -----------------------------------------------------------------------------------
  async function openHsm() {
    await loadTemplates();
    await Promise.all([loadRules(), loadLogs(), loadLeadAds()]);
  }

  // Leads de formularios: GET /crm/marketing/leads/ads, newest first, cursor-paged.
  function leadAdRow(lead) {
    const whatsapp = lead.followup_sent
      ? `Enviado${lead.followup_sent_at ? ` ${dateTime(lead.followup_sent_at)}` : ""}`
      : (lead.whatsapp_opt_out ? "No desea mensajes" : "Sin enviar");
    return el("tr", { testid: `lead-ad-${lead.id}` },
      el("td", {}, dateTime(lead.created_at)),
      el("td", {}, lead.name || ""),
      el("td", {}, lead.phone || ""),
      el("td", {}, lead.campaign ? (lead.campaign.name || lead.campaign.id) : "—"),
      el("td", {}, lead.ad_id || "—"),
      el("td", {}, lead.form_id || "—"),
      el("td", { testid: "lead-ad-followup" }, whatsapp));
  }

  async function loadLeadAds(more) {
    const params = new URLSearchParams({ limit: "50" });
    if (more && state.leadAdsCursor) params.set("cursor", state.leadAdsCursor);
    let data;
    try {
      data = await request("GET", `/crm/marketing/leads/ads?${params}`);
    } catch (err) {
      $("lead-ads-body").replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "message error" }, describe(err))));
      return;
    }
    const rows = (data.leads || []).map(leadAdRow);
    if (more) $("lead-ads-body").append(...rows); else $("lead-ads-body").replaceChildren(...rows);
    state.leadAdsCursor = data.next_cursor || null;
    show($("lead-ads-more"), !!state.leadAdsCursor);
    show($("lead-ads-empty"), !$("lead-ads-body").children.length);
  }

  async function loadTemplates() {
    let data;
    try {
      data = await request("GET", "/crm/marketing/hsm/templates");
    } catch (err) {
      $("sender-status").textContent = describe(err);
      return;
    }
    state.templates = data.templates || [];
    $("sender-status").textContent = data.connected
      ? `Número conectado · ${state.templates.length} plantillas (sincronizadas ${dateTime(data.synced_at)})`
      : "Ningún número de WhatsApp conectado todavía.";
    $("sender-status").dataset.connected = data.connected ? "true" : "false";
    $("templates-body").replaceChildren(...state.templates.map((t) => el("tr", { testid: `template-${t.name}-${t.language}` },
      el("td", {}, t.name), el("td", {}, t.language), el("td", {}, t.category || ""),
      el("td", {}, el("span", { class: `badge ${t.status}` }, TEMPLATE_STATUS[t.status] || t.status)),
      el("td", {}, t.rejection_reason && t.rejection_reason !== "NONE" ? t.rejection_reason : ""))));
    show($("templates-empty"), state.templates.length === 0);
  }

  async function loadWabas(button) {
    const list = $("whatsapp-accounts");
    let data;
    try {
      data = await busy(button, () => request("GET", "/crm/marketing/whatsapp-accounts"));
    } catch (err) {
      list.replaceChildren(el("li", { class: "message error", testid: "wabas-error" }, describe(err)));
      return;
    }
    const items = [];
    // The person's own business's numbers first, then those a client shares with them.
    const wabas = (data.accounts || []).slice()
      .sort((a, b) => (a.ownership !== "owned") - (b.ownership !== "owned"));
    for (const waba of wabas) {
      for (const phone of waba.phone_numbers || []) {
        items.push(el("li", { testid: `waba-phone-${phone.id}` },
          el("div", {},
            el("strong", {}, phone.display_phone_number || phone.id), " ",
            el("span", { class: `badge ${phone.quality_rating === "GREEN" ? "ok" : "warn"}` },
              `Calidad ${QUALITY[phone.quality_rating] || phone.quality_rating || "?"}`),
            el("div", { class: "meta" },
              `${phone.verified_name || ""} · ${waba.name || waba.id} · límite ${tierText(phone.messaging_limit_tier)}`)),
          el("button", {
            type: "button", class: "small", testid: `wa-connect-${phone.id}`,
            onclick: (e) => connectWhatsapp(waba, phone, e.currentTarget),
          }, "Conectar")));
      }
    }
    if (!items.length) items.push(el("li", { class: "muted" }, "Meta no muestra números de WhatsApp para esta conexión."));
    list.replaceChildren(...items);
  }

  // TIER_1K -> "1.000 conversaciones al día"
  function tierText(tier) {
    const sizes = { TIER_50: 50, TIER_250: 250, TIER_1K: 1000, TIER_2K: 2000, TIER_10K: 10000, TIER_100K: 100000 };
    if (tier === "TIER_UNLIMITED") return "sin límite de conversaciones";
    return sizes[tier] ? `${integer(sizes[tier])} conversaciones al día` : (tier || "?");
  }

  async function connectWhatsapp(waba, phone, button) {
    try {
      const data = await busy(button, () => request("POST", "/crm/marketing/whatsapp/connect",
        { waba_id: String(waba.id), phone_number_id: String(phone.id) }));
      $("whatsapp-accounts").replaceChildren();
      await loadTemplates();
      flash("success", `Número ${data.display_phone_number || phone.display_phone_number || phone.id} conectado; ${data.templates ?? "?"} plantillas sincronizadas.`);
    } catch (err) {
      flash("error", describe(err));
    }
  }

  // -- rules ---------------------------------------------------------------------------------
  async function loadRules() {
    let data;
    try {
      data = await request("GET", "/crm/marketing/hsm/rules");
    } catch (err) {
      $("rules-list").replaceChildren(el("li", { class: "message error" }, describe(err)));
      return;
    }
    const rules = data.rules || [];
    $("rules-list").replaceChildren(...rules.map((r) => el("li", { testid: `rule-${r.id}` },
      el("div", {},
        el("strong", { testid: "rule-title" }, r.name), " ",
        el("span", { class: `badge ${r.enabled ? "ok" : "warn"}` }, r.enabled ? "Activa" : "Pausada"),
        r.template_status && r.template_status !== "APPROVED"
          ? el("span", { class: `badge ${r.template_status}` }, `Plantilla ${TEMPLATE_STATUS[r.template_status] || r.template_status}`)
          : null,
        el("div", { class: "meta" },
          `${TRIGGERS[r.trigger_type] || r.trigger_type} · tras ${ruleDelay(r)} · ${r.template_name} (${r.language})`
          + (r.send_window ? ` · ${r.send_window.start}–${r.send_window.end} ${r.send_window.timezone || ""}` : ""))),
      el("div", { class: "actions admin-only" },
        el("button", { type: "button", class: "small", testid: `rule-toggle-${r.id}`,
          onclick: (e) => patchRule(r, { enabled: !r.enabled }, e.currentTarget) }, r.enabled ? "Pausar" : "Activar"),
        el("button", { type: "button", class: "small", testid: `rule-delete-${r.id}`,
          onclick: (e) => deleteRule(r, e.currentTarget) }, "Eliminar")))));
    show($("rules-empty"), rules.length === 0);
  }

  function ruleDelay(rule) {
    const delay = DELAYS[rule.trigger_type] || DELAYS.lead_followup;
    return `${rule[delay.field]} ${delay.unit}`;
  }

  function renderDelay() {
    const delay = DELAYS[$("rule-trigger").value] || DELAYS.lead_followup;
    $("rule-delay-label").textContent = delay.label;
    Object.assign($("rule-delay"), { min: delay.min, max: delay.max, value: delay.value });
  }

  // The templates a rule may name, in the order the form offers them: APPROVED first (only
  // they send: a rule on a pending template sends nothing until Meta approves it), the page's
  // language next, then those named after the trigger, then by name. The first is the default.
  function usableTemplates() {
    const trigger = ($("rule-trigger") || {}).value || "lead_followup";
    const rank = (t) => [t.status === "APPROVED" ? 0 : 1, t.language.startsWith("es") ? 0 : 1,
      t.name.includes(trigger) ? 0 : 1];
    return state.templates.filter((t) => t.usable_in_rules !== false
      && !["REJECTED", "DISABLED", "DELETED", "PENDING_DELETION"].includes(t.status))
      .sort((a, b) => {
        const [x, y] = [rank(a), rank(b)];
        return (x[0] - y[0]) || (x[1] - y[1]) || (x[2] - y[2]) || a.name.localeCompare(b.name);
      });
  }

  function renderParams() {
    const template = usableTemplates()[Number($("rule-template").value)];
    const note = $("rule-template-note");
    note.textContent = template && template.status !== "APPROVED"
      ? `Esta plantilla está ${(TEMPLATE_STATUS[template.status] || template.status).toLowerCase()}: la regla no enviará nada hasta que Meta la apruebe.`
      : "";
    show(note, !!note.textContent);
    const count = template ? num(template.placeholders) || 0 : 0;
    const fieldset = $("rule-params");
    const selects = [];
    for (let i = 0; i < count; i += 1) {
      selects.push(el("label", {}, `Variable {{${i + 1}}}`,
        el("select", { testid: `rule-param-${i + 1}`, class: "rule-param" },
          ...Object.entries(LEAD_FIELDS).map(([value, label]) => el("option", { value }, label)))));
    }
    fieldset.replaceChildren(el("legend", {}, "Variables de la plantilla"),
      ...(selects.length ? selects : [el("span", { class: "muted" }, "Esta plantilla no tiene variables.")]));
  }

  // The template choices, ranked for the chosen trigger (saveRule reads them by position).
  function renderTemplates() {
    const templates = usableTemplates();
    const select = $("rule-template");
    select.replaceChildren(...templates.map((t, i) => el("option", { value: i },
      `${t.name} (${t.language})${t.status !== "APPROVED"
        ? ` · ${TEMPLATE_STATUS[t.status] || t.status}: no enviará hasta que Meta la apruebe` : ""}`)));
    select.value = "0";
    renderParams();
    return templates;
  }

  async function openRuleForm() {
    if (!state.templates.length) await loadTemplates();
    const templates = renderTemplates();
    $("rule-error").hidden = true;
    show($("rule-form"), true);
    if (!templates.length) {
      setMessage($("rule-error"), "warn", "No hay plantillas utilizables: conecta un número de WhatsApp primero.");
    }
    $("rule-name").focus();
  }

  async function saveRule(event) {
    event.preventDefault();
    const template = usableTemplates()[Number($("rule-template").value)];
    const trigger = $("rule-trigger").value;
    const body = {
      name: $("rule-name").value.trim(),
      trigger_type: trigger,
      [(DELAYS[trigger] || DELAYS.lead_followup).field]: Number.parseInt($("rule-delay").value, 10),
      template_name: template ? template.name : "",
      language: template ? template.language : "",
      body_params: [...document.querySelectorAll(".rule-param")].map((s) => s.value),
      enabled: $("rule-enabled").checked,
    };
    if ($("rule-window-on").checked) {
      body.send_window = { start: $("rule-window-start").value, end: $("rule-window-end").value };
    }
    const button = event.submitter || $("rule-form").querySelector("button[type=submit]");
    try {
      await busy(button, () => request("POST", "/crm/marketing/hsm/rules", body));
    } catch (err) {
      setMessage($("rule-error"), "error", describe(err));
      return;
    }
    $("rule-form").reset();
    renderDelay();
    show($("rule-window"), false);
    show($("rule-form"), false);
    flash("success", "Regla creada exitosamente");
    await loadRules();
  }

  async function patchRule(rule, changes, button) {
    try {
      await busy(button, () => request("PATCH", `/crm/marketing/hsm/rules/${encodeURIComponent(rule.id)}`, changes));
      flash("success", "Regla actualizada");
    } catch (err) {
      flash("error", describe(err));
    }
    await loadRules();
  }

  async function deleteRule(rule, button) {
    try {
      await busy(button, () => request("DELETE", `/crm/marketing/hsm/rules/${encodeURIComponent(rule.id)}`));
      flash("success", "Regla eliminada");
    } catch (err) {
      flash("error", describe(err));
    }
    await loadRules();
  }

  // -- dispatch and logs ---------------------------------------------------------------------
  async function runDispatch(button) {
    const out = $("dispatch-result");
    try {
      const data = await busy(button, () => request("POST", "/__dev/jobs/dispatch"));
      const s = data.summary || {};
      setMessage(out, "success", `Reglas: ${s.rules ?? "?"} · Enviados: ${s.sent ?? "?"} · Fallidos: ${s.failed ?? "?"} · Omitidos: ${s.skipped ?? "?"}`);
    } catch (err) {
      setMessage(out, "error", describe(err));
    }
    if (await loadLogs()) followDeliveries(15);
  }

  function logRow(log) {
    const error = log.error ? (SEND_ERRORS[log.error.code] || `Error ${log.error.code || ""}`.trim()) : "";
    const when = log.read_at || log.delivered_at || log.sent_at || log.created_at;
    return el("tr", { testid: `log-${log.id}` },
      el("td", {}, dateTime(when)),
      el("td", {}, (log.lead && log.lead.name) || ""),
      el("td", {}, log.phone || ""),
      el("td", {}, (log.rule && log.rule.name) || ""),
      el("td", {}, log.template ? `${log.template.name} (${log.template.language})` : ""),
      el("td", {}, el("span", { class: `badge ${log.status}`, testid: "log-status" }, LOG_STATUS[log.status] || log.status)),
      el("td", {}, error));
  }

  // After a dispatch, Meta's status webhooks arrive over the next seconds: follow them a while.
  function followDeliveries(rounds) {
    clearTimeout(state.logsTimer);
    if (rounds <= 0) return;
    state.logsTimer = setTimeout(async () => {
      if (!state.session || $("view-hsm").hidden) return;
      const open = await loadLogs();
      if (open) followDeliveries(rounds - 1);
    }, 2000);
  }

  // Loads the first page (or the next one); answers whether any message still awaits delivery.
  async function loadLogs(more) {
    const params = new URLSearchParams({ limit: "50" });
    if (more && state.logsCursor) params.set("cursor", state.logsCursor);
    let data;
    try {
      data = await request("GET", `/crm/marketing/hsm/logs?${params}`);
    } catch (err) {
      $("logs-body").replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "message error" }, describe(err))));
      return;
    }
    const rows = (data.logs || []).map(logRow);
    if (more) $("logs-body").append(...rows); else $("logs-body").replaceChildren(...rows);
    state.logsCursor = data.next_cursor || null;
    show($("logs-more"), !!state.logsCursor);
    show($("logs-empty"), !$("logs-body").children.length);
    return (data.logs || []).some((log) => log.status === "PENDING" || log.status === "SENT");
  }

  // -- start ---------------------------------------------------------------------------------
  async function detectLocal() {
    try {
      const config = await request("GET", "/__dev/config");
      state.local = !!config.local;
      state.demoTenant = config.demo_tenant || state.demoTenant;
    } catch (_e) {
      state.local = false;
    }
    document.body.classList.toggle("local", state.local);
  }

  function wire() {
    $("login-admin").addEventListener("click", (e) => signIn("admin", e.currentTarget));
    $("login-member").addEventListener("click", (e) => signIn("member", e.currentTarget));
    $("logout").addEventListener("click", () => signOut());
    $("connect-meta").addEventListener("click", (e) => connectMeta(e.currentTarget));
    $("refresh-token").addEventListener("click", (e) => refreshToken(e.currentTarget));
    $("load-accounts").addEventListener("click", (e) => loadAccounts(e.currentTarget));
    $("accounts-filter").addEventListener("input", renderAccounts);
    $("reload-stats").addEventListener("click", (e) => busy(e.currentTarget, loadStats));
    $("dev-sync").addEventListener("click", async (e) => {
      const result = await runSync(e.currentTarget);
      if (result) flash("success", `Campañas sincronizadas (${result.accounts} cuentas).`);
      await loadStats();
    });
    $("load-wabas").addEventListener("click", (e) => loadWabas(e.currentTarget));
    $("new-rule").addEventListener("click", openRuleForm);
    $("rule-template").addEventListener("change", renderParams);
    $("rule-trigger").addEventListener("change", () => { renderDelay(); renderTemplates(); });
    $("lead-ads-refresh").addEventListener("click", (e) => busy(e.currentTarget, () => loadLeadAds()));
    $("lead-ads-more").addEventListener("click", (e) => busy(e.currentTarget, () => loadLeadAds(true)));
    $("rule-window-on").addEventListener("change", (e) => show($("rule-window"), e.currentTarget.checked));
    $("rule-cancel").addEventListener("click", () => show($("rule-form"), false));
    $("rule-form").addEventListener("submit", saveRule);
    $("dev-dispatch").addEventListener("click", (e) => runDispatch(e.currentTarget));
    $("logs-refresh").addEventListener("click", (e) => busy(e.currentTarget, () => loadLogs()));
    $("logs-more").addEventListener("click", (e) => busy(e.currentTarget, () => loadLogs(true)));
    window.addEventListener("hashchange", () => {
      $("flash").hidden = true;  // a message belongs to the view it was shown on
      if (state.session) route();
    });
  }

  async function main() {
    wire();
    readOAuthOutcome();
    await detectLocal();
    $("login-tenant").value = state.demoTenant;
    state.session = loadSession();
    if (state.session) startApp(); else signOut();
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", main);
})();
