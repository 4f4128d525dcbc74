// wattstream dashboard: plain JavaScript, ECharts vendored at install time (works offline).
// Data comes from the API with the key given at sign-in; live updates come from the SSE
// streams, read with fetch() so the key travels in the Authorization header.
"use strict";

const I18N = {
  zh: {
    title: "能碳监测", tab_grid: "电网", tab_site: "建筑", tab_dc: "数据中心", tab_alerts: "告警",
    sign_in: "使用 API 密钥登录", sign_in_button: "登录", sign_out: "退出", region: "区域", site: "站点",
    datacentre: "数据中心", intensity: "碳排放强度 (gCO₂/kWh)", mix: "发电结构 (MW)",
    shares: "化石 / 可再生 / 非化石占比", window: "未来低碳时段", power: "实时功率 (kW)",
    today_vs: "今日与上周同日 (kWh/h)", subitems: "分项能耗 (kWh)", emissions: "碳排放 (kgCO₂e)",
    quota: "本月能耗与限额", eui: "单位面积能耗 EUI", pue: "PUE 与 GB 40879-2021 能效等级",
    it_vs: "IT 负载与总能耗 (kWh)", alerts_now: "当前告警", a_severity: "级别", a_alert: "告警",
    a_subject: "对象", a_since: "开始", a_value: "数值", a_state: "状态", no_alerts: "暂无告警",
    lifecycle: "全生命周期", direct: "直接排放", fossil: "化石", renewable: "可再生", nonfossil: "非化石",
    target: "目标", today: "今日", last_week: "上周同日", location: "基于位置", market: "基于市场",
    used: "累计用电", projection: "预测", limit: "限额", facility: "总能耗", it: "IT 负载",
    grade: "等级", beyond: "超出限定值", ack: "确认", acked: "已确认", silence: "静默 1 小时",
    silenced: "已静默", firing: "告警中", pending: "待定", bad_key: "密钥无效或已过期",
    now: "当前", kw: "kW", window_text: "建议在 {start} 至 {end} 运行：平均 {mean} g/kWh，比时段平均低 {saving}",
    quota_text: "已用 {used} kWh，按当前速度本月约 {proj} kWh{limit}", quota_limit: "，限额 {q} kWh",
    no_quota: "（未设置限额）", no_window: "尚无预测，也未满一天历史数据", eui_text: "{v} kWh/m²·年（近 12 个月）", no_area: "未登记建筑面积",
    lighting: "照明插座", hvac: "空调", motive: "动力", special: "特殊",
  },
  en: {
    title: "Energy & carbon", tab_grid: "Grid", tab_site: "Building", tab_dc: "Data centre", tab_alerts: "Alerts",
    sign_in: "Sign in with an API key", sign_in_button: "Sign in", sign_out: "Sign out", region: "Region",
    site: "Site", datacentre: "Data centre", intensity: "Carbon intensity (gCO₂/kWh)", mix: "Generation mix (MW)",
    shares: "Fossil / renewable / non-fossil share", window: "Lowest-carbon window ahead", power: "Power now (kW)",
    today_vs: "Today vs same weekday last week (kWh/h)", subitems: "Energy by sub-item (kWh)",
    emissions: "Emissions (kgCO₂e)", quota: "This month's energy against the quota", eui: "Energy use intensity (EUI)",
    pue: "PUE and its GB 40879-2021 grade", it_vs: "IT load and total energy (kWh)", alerts_now: "Alerts now",
    a_severity: "Severity", a_alert: "Alert", a_subject: "Subject", a_since: "Since", a_value: "Value",
    a_state: "State", no_alerts: "No alerts", lifecycle: "lifecycle", direct: "direct", fossil: "fossil",
    renewable: "renewable", nonfossil: "non-fossil", target: "target", today: "today", last_week: "last week",
    location: "location-based", market: "market-based", used: "used", projection: "projection", limit: "quota",
    facility: "total", it: "IT load", grade: "grade", beyond: "beyond the limit", ack: "Acknowledge",
    acked: "acknowledged", silence: "Silence 1 h", silenced: "silenced", firing: "firing", pending: "pending",
    bad_key: "The key is invalid or expired", now: "now", kw: "kW",
    window_text: "Run it {start} – {end}: mean {mean} g/kWh, {saving} below the horizon's mean",
    quota_text: "{used} kWh used; at this pace about {proj} kWh this month{limit}", quota_limit: ", quota {q} kWh",
    no_quota: " (no quota set)", no_window: "no forecast yet, nor a full day of history", eui_text: "{v} kWh/m²·year (last 12 months)", no_area: "floor area not registered",
    lighting: "lighting & sockets", hvac: "HVAC", motive: "power", special: "special",
  },
};
const SUB_ITEMS = [["照明插座", "lighting"], ["空调", "hvac"], ["动力", "motive"], ["特殊", "special"]];
const HOUR = 3600e3;
// live charts redraw at most this often, however fast events arrive: a chart is read by eye,
// and every redraw costs the browser a layout and paint of the canvas. A live redraw replaces
// only the series' data (ECharts merges it into the chart as built); a hidden tab does not
// redraw at all until it is shown again.
const LIVE_REDRAW_MS = 2000;
// the data centre's PUE is hourly: its live refresh refetches the day at most this often
const PUE_REFRESH_MS = 15000;
const DAY = 24 * HOUR;

const state = { key: sessionStorage.getItem("wattstream.key") || "", lang: localStorage.getItem("wattstream.lang") || "zh",
  page: null, charts: {}, streams: [], sites: [], can: {}, timers: new Set(), deferred: new Set() };
const $ = (id) => document.getElementById(id);
const t = (k, vars) => {
  let s = (I18N[state.lang] || I18N.zh)[k] ?? k;
  for (const [n, v] of Object.entries(vars || {})) s = s.replace(`{${n}}`, v);
  return s;
};
const fmt = (v, d = 1) => (v == null || Number.isNaN(v) ? "–" : Number(v).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { maximumFractionDigits: d }));
const iso = (ms) => new Date(ms).toISOString();
const hhmm = (ms) => new Date(ms).toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" });

class ApiError extends Error { constructor(status, message) { super(message); this.status = status; } }

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${state.key}`,
    ...(options.body ? { "Content-Type": "application/json" } : {}) } });
  if (r.status === 401) { signOut(); throw new ApiError(401, t("bad_key")); }
  if (!r.ok) throw new ApiError(r.status, (await r.json().catch(() => ({}))).error?.message || r.statusText);
  return r.status === 204 ? null : r.json();
}

// An SSE stream over fetch (EventSource cannot send the Authorization header); reconnects with
// Last-Event-ID after a drop, so nothing within the server's buffer is missed.
function stream(path, onEvent) {
  const ctl = { closed: false, abort: null, lastId: null };
  (async () => {
    while (!ctl.closed) {
      const abort = new AbortController();
      ctl.abort = abort;
      try {
        const headers = { Authorization: `Bearer ${state.key}` };
        if (ctl.lastId) headers["Last-Event-ID"] = ctl.lastId;
        const r = await fetch(path, { headers, signal: abort.signal });
        if (!r.ok) { if (r.status === 401) { signOut(); return; } throw new Error(String(r.status)); }
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const fields = {};
            for (const line of block.split("\n")) {
              const i = line.indexOf(": ");
              if (i > 0 && !line.startsWith(":")) fields[line.slice(0, i)] = line.slice(i + 2);
            }
            if (fields.id) ctl.lastId = fields.id;
            if (fields.data) { try { onEvent(JSON.parse(fields.data)); } catch (e) { console.warn("stream event", e); } }
          }
        }
      } catch (e) {
        if (ctl.closed) return;
      }
      if (!ctl.closed) await new Promise((res) => setTimeout(res, 2000));
    }
  })();
  state.streams.push(ctl);
  return ctl;
}

// fn, called at most once per `ms` (the calls in between fold into one), and not while the tab
// is hidden (it runs once when the tab is shown); cancelled with the page
function throttled(fn, ms) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      state.timers.delete(timer);
      timer = null;
      if (document.hidden) state.deferred.add(fn); else fn();
    }, ms);
    state.timers.add(timer);
  };
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  const due = [...state.deferred];
  state.deferred.clear();
  for (const fn of due) fn();
});

function closeStreams() {
  for (const s of state.streams) { s.closed = true; s.abort?.abort(); }
  state.streams = [];
  for (const id of state.timers) clearTimeout(id);
  state.timers.clear();
  state.deferred.clear();
}

function chart(id) {
  if (!state.charts[id]) {
    state.charts[id] = echarts.init($(id), "dark", { renderer: "canvas" });
  }
  return state.charts[id];
}

const BASE = { animation: false, backgroundColor: "transparent", grid: { left: 48, right: 16, top: 28, bottom: 28 },
  tooltip: { trigger: "axis" }, legend: { top: 0, textStyle: { fontSize: 11 } } };
const timeAxis = { type: "time", axisLabel: { hideOverlap: true } };

function translateStatic() {
  document.documentElement.lang = state.lang === "zh" ? "zh" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("lang").textContent = state.lang === "zh" ? "EN" : "中文";
}

// --- sign-in and navigation ---

async function probe(path) {
  try { await api(path); return true; } catch (e) { if (e.status === 401) throw e; return false; }
}

async function signIn(key) {
  state.key = key;
  try {
    state.can = { grid: await probe("/v1/grid/regions"), sites: await probe("/v1/sites?limit=1"), alerts: await probe("/v1/alerts?limit=1") };
  } catch (e) {
    $("signin-error").textContent = t("bad_key");
    return;
  }
  sessionStorage.setItem("wattstream.key", key);
  $("signin").hidden = true;
  $("tabs").hidden = false;
  $("signout").hidden = false;
  // what a key may not see is not shown
  document.querySelector('[data-page="grid"]').hidden = !state.can.grid;
  document.querySelector('[data-page="site"]').hidden = !state.can.sites;
  document.querySelector('[data-page="dc"]').hidden = !state.can.sites;
  document.querySelector('[data-page="alerts"]').hidden = !state.can.alerts;
  if (state.can.sites) state.sites = (await api("/v1/sites?limit=1000")).items;
  const first = (location.hash.slice(1) && state.can[pageNeeds(location.hash.slice(1))]) ? location.hash.slice(1)
    : state.can.grid ? "grid" : state.can.sites ? "site" : "alerts";
  show(first);
}

function pageNeeds(page) { return { grid: "grid", site: "sites", dc: "sites", alerts: "alerts" }[page] || "none"; }

function signOut() {
  closeStreams();
  sessionStorage.removeItem("wattstream.key");
  state.key = "";
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
}

function show(page) {
  closeStreams();
  state.page = page;
  location.hash = page;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.page === page);
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== `page-${page}`;
  ({ grid: showGrid, site: showSite, dc: showDc, alerts: showAlerts })[page]().catch((e) => console.error(page, e));
  requestAnimationFrame(() => Object.values(state.charts).forEach((c) => c.resize()));
}

function fillSelect(select, values, label) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => new Option(label ? label(v) : v, v)));
  if (values.includes(keep)) select.value = keep;
}

// --- grid ---

async function showGrid() {
  const regions = await api("/v1/grid/regions");
  fillSelect($("region"), regions.map((r) => r.region));
  if (!$("region").value && regions.length) $("region").value = regions[0].region;
  const region = $("region").value;
  if (!region) return;
  const latest = Date.parse(regions.find((r) => r.region === region).latest);
  const q = `start=${iso(latest - DAY)}&end=${iso(latest + HOUR)}`;
  const [life, direct, mix, shares] = await Promise.all([
    api(`/v1/grid/${region}/intensity?${q}&scope=lifecycle`),
    api(`/v1/grid/${region}/intensity?${q}&scope=direct`),
    api(`/v1/grid/${region}/mix?${q}`),
    api(`/v1/grid/${region}/shares?${q}&resolution=hour`),
  ]);
  const series = { lifecycle: new Map(), direct: new Map() };
  for (const p of life.points) series.lifecycle.set(Date.parse(p.start), p.intensity_g_per_kwh);
  for (const p of direct.points) series.direct.set(Date.parse(p.start), p.intensity_g_per_kwh);
  const sorted = (k) => [...series[k].entries()].sort((a, b) => a[0] - b[0]);
  const drawIntensity = () => {
    chart("c-intensity").setOption({ series: ["lifecycle", "direct"].map((k) => ({ data: sorted(k) })) });
    const last = sorted("lifecycle").pop();
    $("grid-now").textContent = last ? `${t("now")} ${fmt(last[1], 0)} gCO₂/kWh · ${hhmm(last[0])}` : "";
  };
  chart("c-intensity").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value", scale: true },
    series: ["lifecycle", "direct"].map((k) => ({ name: t(k), type: "line", showSymbol: false, data: [] })) }, true);
  drawIntensity();
  const redrawIntensity = throttled(drawIntensity, LIVE_REDRAW_MS);
  const fuels = [...new Set(mix.flatMap((m) => Object.keys(m.by_fuel_mw)))].filter((f) => mix.some((m) => m.by_fuel_mw[f] > 0));
  chart("c-mix").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value" },
    series: fuels.map((f) => ({ name: f, type: "line", stack: "mix", areaStyle: {}, showSymbol: false,
      data: mix.map((m) => [Date.parse(m.start), Math.max(m.by_fuel_mw[f] || 0, 0)]) })) }, true);
  const targets = shares.targets.map((g) => ({ yAxis: g.target_share, name: `${t("target")} ${g.year}`,
    label: { formatter: `${g.year} ${Math.round(g.target_share * 100)}%` } }));
  chart("c-shares").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value", min: 0, max: 1, axisLabel: { formatter: (v) => `${v * 100}%` } },
    series: [["fossil", "fossil_share"], ["renewable", "renewable_share"], ["nonfossil", "nonfossil_share"]].map(([k, col], i) => ({
      name: t(k), type: "line", showSymbol: shares.buckets.length < 3, data: shares.buckets.map((b) => [Date.parse(b.start), b[col]]),
      ...(i === 2 ? { markLine: { symbol: "none", lineStyle: { type: "dashed" }, data: targets } } : {}) })) }, true);
  // the window needs forecasts, or a whole day of history to shift forward: ask only when there is one
  const forecast = await api(`/v1/grid/${region}/intensity?start=${iso(latest)}&end=${iso(latest + DAY)}&basis=published&kind=forecast`);
  const firstKnown = Math.min(...series.lifecycle.keys());
  if (forecast.points.length || firstKnown <= latest - DAY + HOUR / 4) {
    api(`/v1/grid/${region}/lowest-carbon-window?start=${iso(latest)}&horizon_hours=24&duration_minutes=120`).then((w) => {
    chart("c-window").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value", scale: true },
      series: [{ name: t("lifecycle"), type: "line", showSymbol: false,
        data: [...series.lifecycle.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => [k + (w.shifted_days || 0) * DAY, v]),
        markArea: { itemStyle: { color: "rgba(63,182,139,0.25)" }, data: [[{ xAxis: Date.parse(w.start) }, { xAxis: Date.parse(w.end) }]] } }] }, true);
    $("window-text").textContent = t("window_text", { start: hhmm(Date.parse(w.start)), end: hhmm(Date.parse(w.end)),
      mean: fmt(w.mean_intensity_g_per_kwh, 0), saving: `${fmt(w.saving_share * 100, 0)}%` });
  }).catch((e) => { chart("c-window").clear(); $("window-text").textContent = e.message; });  // e.g. no forecast nor a day of history yet
  } else {
    chart("c-window").clear();
    $("window-text").textContent = t("no_window");
  }
  stream(`/v1/stream/grid/${region}`, (e) => {
    if (e.kind !== "actual" || e.basis !== "consumption" || !(e.scope in series)) return;
    series[e.scope].set(Date.parse(e.ts), e.intensity_g_per_kwh);
    redrawIntensity();
  });
}

// --- site ---

const siteRecord = (id) => state.sites.find((s) => s.site_id === id);

async function showSite() {
  const buildings = state.sites.filter((s) => s.kind === "building").map((s) => s.site_id);
  fillSelect($("site"), buildings);
  const site = $("site").value;
  if (!site) return;
  const rec = siteRecord(site);
  const now = await api(`/v1/sites/${site}/now`);
  // "today" is the local day of the site's newest reading (a replay or a backlog lags the clock)
  const asOf = now.as_of ? Date.parse(now.as_of) : Date.parse(now.today_start);
  const day0 = Date.parse(now.today_start) - Math.max(0, Math.ceil((Date.parse(now.today_start) - asOf) / DAY)) * DAY;
  const range = (a, b, res, extra = "") => `start=${iso(a)}&end=${iso(b)}&resolution=${res}${extra}`;
  const [quarter, today, lastWeek, emissions, months, year, ...subs] = await Promise.all([
    api(`/v1/sites/${site}/energy?${range(day0, day0 + DAY, "15min")}`),
    api(`/v1/sites/${site}/energy?${range(day0, day0 + DAY, "hour")}`),
    api(`/v1/sites/${site}/energy?${range(day0 - 7 * DAY, day0 - 6 * DAY, "hour")}`),
    api(`/v1/sites/${site}/emissions?${range(day0, day0 + DAY, "hour")}`),
    api(`/v1/sites/${site}/energy?${range(day0 - 40 * DAY, day0 + DAY, "month")}`),
    api(`/v1/sites/${site}/energy?${range(day0 - 365 * DAY, day0 + DAY, "month")}`),
    ...SUB_ITEMS.map(([name]) => api(`/v1/sites/${site}/energy?${range(day0, day0 + DAY, "hour", `&sub_item=${encodeURIComponent(name)}`)}`)),
  ]);
  // power: the 15-minute average so far today, then every live value
  const power = quarter.buckets.filter((b) => b.coverage > 0).map((b) => [Date.parse(b.start), b.kwh * 4]);
  chart("c-power").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value", scale: true },
    series: [{ name: t("power"), type: "line", showSymbol: false, data: [] }] }, true);
  // the chart and the figure above it change together, at most every LIVE_REDRAW_MS: a figure
  // rewritten on every event costs the page a layout and a paint each time
  const drawPower = () => {
    chart("c-power").setOption({ series: [{ data: power }] });
    const last = power[power.length - 1];
    if (last) live(last[1], last[0]);
  };
  const live = (kw, at) => { $("site-now").textContent = `${t("now")} ${fmt(kw)} kW · ${hhmm(at)}`; };
  if (now.power_kw != null) { power.push([Date.parse(now.as_of), now.power_kw]); live(now.power_kw, Date.parse(now.as_of)); }
  drawPower();
  const redrawPower = throttled(drawPower, LIVE_REDRAW_MS);
  const byHour = (s, offset) => s.buckets.map((b) => [(Date.parse(b.start) - offset - day0) / HOUR, b.kwh]);
  chart("c-today").setOption({ ...BASE, xAxis: { type: "value", min: 0, max: 24, interval: 3 }, yAxis: { type: "value" },
    series: [{ name: t("last_week"), type: "line", showSymbol: false, lineStyle: { type: "dashed" }, data: byHour(lastWeek, -7 * DAY) },
      { name: t("today"), type: "bar", barMaxWidth: 14, data: byHour(today, 0) }] }, true);
  chart("c-subitems").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value" },
    series: subs.map((s, i) => ({ name: t(SUB_ITEMS[i][1]), type: "bar", stack: "sub", barMaxWidth: 14,
      data: s.buckets.map((b) => [Date.parse(b.start), b.kwh]) })) }, true);
  chart("c-emissions").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value" },
    series: [["location", "location_kg"], ["market", "market_kg"]].map(([k, col]) => ({ name: t(k), type: "line", showSymbol: emissions.buckets.length < 3,
      data: emissions.buckets.map((b) => [Date.parse(b.start), b[col]]) })) }, true);
  // quota burn: this local month's cumulative energy, its straight-line projection and the quota
  const month = months.buckets[months.buckets.length - 1];
  if (month) {
    const m0 = Date.parse(month.start), m1 = Date.parse(month.end);
    const daily = await api(`/v1/sites/${site}/energy?${range(m0, m1, "day")}`);
    let sum = 0;
    const cumulative = daily.buckets.filter((b) => Date.parse(b.start) <= asOf)
      .map((b) => { sum += b.kwh; return [Date.parse(b.end), sum]; });
    const at = cumulative.length ? cumulative[cumulative.length - 1][0] : m0;
    const projected = at > m0 ? (sum * (m1 - m0)) / (at - m0) : null;
    const quota = rec?.energy_quota_month_kwh;
    chart("c-quota").setOption({ ...BASE, xAxis: { ...timeAxis, min: m0, max: m1 }, yAxis: { type: "value" },
      series: [{ name: t("used"), type: "line", data: cumulative, areaStyle: { opacity: 0.2 } },
        { name: t("projection"), type: "line", lineStyle: { type: "dashed" }, showSymbol: false,
          data: projected ? [[at, sum], [m1, projected]] : [] },
        ...(quota ? [{ name: t("limit"), type: "line", showSymbol: false, lineStyle: { color: "#e05252" }, data: [[m0, quota], [m1, quota]] }] : [])] }, true);
    $("quota-text").textContent = t("quota_text", { used: fmt(sum, 0), proj: fmt(projected, 0),
      limit: quota ? t("quota_limit", { q: fmt(quota, 0) }) : t("no_quota") });
  }
  $("eui").textContent = rec?.floor_area_m2 ? t("eui_text", { v: fmt(year.total_kwh / rec.floor_area_m2, 1) }) : t("no_area");
  stream(`/v1/stream/sites/${site}`, (e) => {
    if (e.power_kw == null || !e.as_of) return;
    power.push([Date.parse(e.as_of), e.power_kw]);
    if (power.length > 2000) power.splice(0, power.length - 2000);
    redrawPower();
  });
}

// --- data centre ---

const GRADE_COLORS = { 1: "rgba(63,182,139,0.18)", 2: "rgba(224,160,48,0.14)", 3: "rgba(224,82,82,0.12)" };

async function showDc() {
  const dcs = state.sites.filter((s) => s.kind === "datacentre").map((s) => s.site_id);
  fillSelect($("dc"), dcs);
  const site = $("dc").value;
  if (!site) return;
  const draw = async () => {
    const now = await api(`/v1/sites/${site}/now`);
    const end = Date.parse(now.as_of || now.today_start) + HOUR;
    const pue = await api(`/v1/sites/${site}/pue?start=${iso(end - DAY)}&end=${iso(end)}&resolution=hour`);
    const limits = Object.entries(pue.grade_limits).map(([g, v]) => [Number(g), v]).sort((a, b) => a[0] - b[0]);
    const bands = limits.map(([g, v], i) => [{ yAxis: i ? limits[i - 1][1] : 1.0, itemStyle: { color: GRADE_COLORS[g] },
      name: `${t("grade")} ${g}` }, { yAxis: v }]);
    const last = pue.buckets.filter((b) => b.pue != null).pop();
    chart("c-pue").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value", min: 1.0, max: (v) => Math.max(1.6, v.max + 0.05) },
      series: [{ name: "PUE", type: "line", showSymbol: pue.buckets.length < 3, data: pue.buckets.map((b) => [Date.parse(b.start), b.pue]),
        markArea: { silent: true, label: { position: "insideRight", fontSize: 10 }, data: bands } }] }, true);
    $("dc-now").textContent = last
      ? `PUE ${fmt(last.pue, 2)} · ${last.grade ? `${t("grade")} ${last.grade}` : t("beyond")} (${pue.standard}) · ${hhmm(Date.parse(last.start) + HOUR)}`
      : "";
    chart("c-it").setOption({ ...BASE, xAxis: timeAxis, yAxis: { type: "value" },
      series: [["facility", "total_kwh"], ["it", "it_kwh"]].map(([k, col]) => ({ name: t(k), type: "line", showSymbol: pue.buckets.length < 3,
        data: pue.buckets.map((b) => [Date.parse(b.start), b[col]]) })) }, true);
  };
  await draw();
  stream(`/v1/stream/sites/${site}`, throttled(() => draw().catch(console.error), PUE_REFRESH_MS));
}

// --- alerts ---

async function showAlerts() {
  const draw = async () => {
    const alerts = await api("/v1/alerts?state=active");
    const rows = alerts.map((a) => {
      const tr = document.createElement("tr");
      const cells = [a.labels.severity, a.labels.alertname, a.subject, a.since ? new Date(a.since).toLocaleString() : "–",
        fmt(a.value, 3), t(a.state)];
      cells.forEach((text, i) => { const td = document.createElement("td"); td.textContent = text;
        if (i === 0) td.className = `sev-${a.labels.severity}`; tr.append(td); });
      const actions = document.createElement("td");
      if (a.acknowledged) { const s = document.createElement("span"); s.className = "tag"; s.textContent = t("acked"); actions.append(s); }
      else if (a.state === "firing") {
        const b = document.createElement("button"); b.textContent = t("ack"); b.className = "ack";
        b.onclick = async () => { b.disabled = true; await api(`/v1/alerts/${a.fingerprint}/ack`, { method: "POST", body: JSON.stringify({ comment: "dashboard" }) }).catch(console.error); draw(); };
        actions.append(b);
      }
      if (a.silenced) { const s = document.createElement("span"); s.className = "tag"; s.textContent = t("silenced"); actions.append(s); }
      else if (state.can.sites) {
        const b = document.createElement("button"); b.textContent = t("silence"); b.className = "silence";
        b.onclick = async () => {
          b.disabled = true;
          const matchers = [{ name: "alertname", value: a.labels.alertname }, ...(a.site ? [{ name: "site", value: a.site }] : [])];
          await api("/v1/silences", { method: "POST", body: JSON.stringify({ matchers, ends_at: iso(Date.now() + HOUR), comment: "dashboard" }) }).catch(console.error);
          draw();
        };
        actions.append(b);
      }
      tr.dataset.fingerprint = a.fingerprint;
      tr.append(actions);
      return tr;
    });
    document.querySelector("#alerts tbody").replaceChildren(...rows);
    $("alerts-empty").hidden = rows.length > 0;
  };
  await draw();
  stream("/v1/stream/alerts", throttled(() => draw().catch(console.error), 500));
}

// --- start ---

document.addEventListener("DOMContentLoaded", () => {
  translateStatic();
  $("lang").onclick = () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("wattstream.lang", state.lang);
    translateStatic();
    if (state.page) show(state.page);
  };
  $("signin").onsubmit = (e) => { e.preventDefault(); $("signin-error").textContent = ""; signIn($("key").value.trim()); };
  $("signout").onclick = signOut;
  for (const b of document.querySelectorAll("nav button")) b.onclick = () => show(b.dataset.page);
  for (const id of ["region", "site", "dc"]) $(id).onchange = () => show(state.page);
  window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));
  if (state.key) signIn(state.key);
});
