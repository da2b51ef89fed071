// Analytics: footfall (visitors and passers-by per day with the capture rate, visitors per
// hour of a chosen day, how long visitors stayed, new against repeat visitors), people
// present per hour of that day (occupancy, the gateways' estimate) for one store or all,
// and the message funnel of a chosen scenario with its holdout and A/B arms.
// Everything is read from the analytics API; the view (store, period, day, scenario) is
// kept in the page's address, so a link shows the same view.
import { BarChart, DayChart, dayLabel } from "console/charts.js";
import {
  ErrorNotice, Loading, SelectField, Section, Table, TextField, count, html, mount,
  percent, tenantPath, useApi, useState,
} from "console/lib.js";
import { STAGES, ScenarioReport } from "console/scenario-report.js";

const DAY_MS = 86_400_000;
const PERIODS = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]];
const DEFAULT_DAYS = "30";
const ALL_STORES = "";
const HOURS = Array.from({ length: 24 }, (_, hour) => `${String(hour).padStart(2, "0")}:00`);

// ---- the view, kept in the address ----------------------------------------------------

function readView() {
  const query = new URLSearchParams(location.search);
  const days = query.get("days");
  return {
    store: query.get("store") || ALL_STORES,
    days: PERIODS.some(([value]) => value === days) ? days : DEFAULT_DAYS,
    day: query.get("day") || "",
    scenario: query.get("scenario") || "",
  };
}

/** The view and a way to change part of it; the address follows (defaults left out). */
function useView() {
  const [view, setView] = useState(readView);
  const change = (changes) => {
    const next = { ...view, ...changes };
    const query = new URLSearchParams();
    if (next.store) query.set("store", next.store);
    if (next.days !== DEFAULT_DAYS) query.set("days", next.days);
    if (next.day) query.set("day", next.day);
    if (next.scenario) query.set("scenario", next.scenario);
    const search = query.toString();
    history.replaceState(null, "", search ? `?${search}` : location.pathname);
    setView(next);
  };
  return [view, change];
}

/** The last `days` whole days (UTC, as the footfall figures count them), today included. */
function periodOf(days) {
  const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
  const since = new Date(today - (Number(days) - 1) * DAY_MS);
  const until = new Date(today + DAY_MS);
  const list = Array.from({ length: Number(days) }, (_, index) => isoDay(new Date(since.getTime() + index * DAY_MS)));
  return { since, until, days: list };
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function windowQuery(since, until) {
  return `since=${encodeURIComponent(since.toISOString())}&until=${encodeURIComponent(until.toISOString())}`;
}

// ---- footfall figures -----------------------------------------------------------------

const SUMMED = ["devices", "visitors", "passers_by", "new_visitors", "repeat_visitors", "unknown_visitors"];

function sumOf(rows, field) {
  return rows.reduce((sum, row) => sum + row[field], 0);
}

/** The rows' figures added up per day, for every day of the period (0 where nobody came). */
function perDay(rows, days) {
  return days.map((day) => {
    const mine = rows.filter((row) => row.day === day);
    const totals = Object.fromEntries(SUMMED.map((field) => [field, sumOf(mine, field)]));
    return { day, ...totals, capture_rate: totals.devices ? totals.visitors / totals.devices : null };
  });
}

/** How long visitors stayed, over the period: the buckets in the order the API gives them. */
function dwellOf(rows) {
  const buckets = Object.keys(rows[0]?.dwell || {});
  return buckets.map((bucket) => [bucket, rows.reduce((sum, row) => sum + (row.dwell[bucket] || 0), 0)]);
}

function bucketLabel(bucket) {
  return bucket.replace(/^</, "under ").replace(/^>/, "over ").replace(/m$/, " min");
}

function Kpi({ label, value }) {
  return html`<div class="kpi" role="group" aria-label=${label}>
    <div class="value">${value}</div><div class="label">${label}</div></div>`;
}

function FootfallFigures({ rows, period }) {
  if (!rows.length) return html`<p class="empty">No visits in this period yet.</p>`;
  const days = perDay(rows, period.days);
  const devices = sumOf(rows, "devices");
  const visitors = sumOf(rows, "visitors");
  const column = (field) => days.map((day) => day[field]);
  const dwell = dwellOf(rows);
  return html`
    <div class="kpis">
      <${Kpi} label="Devices seen" value=${count(devices)} />
      <${Kpi} label="Visitors" value=${count(visitors)} />
      <${Kpi} label="Passers-by" value=${count(sumOf(rows, "passers_by"))} />
      <${Kpi} label="Capture rate" value=${percent(devices ? visitors / devices : null)} />
      <${Kpi} label="Repeat visitors" value=${count(sumOf(rows, "repeat_visitors"))} />
    </div>
    <div class="chart-grid">
      <${DayChart} title="Visitors and passers-by per day"
        hint="Bars: devices seen, split into visitors (a minute or more in the store) and passers-by; line: the capture rate (visitors out of devices seen)."
        days=${period.days}
        bars=${[{ label: "Visitors", values: column("visitors") }, { label: "Passers-by", values: column("passers_by") }]}
        lines=${[{ label: "Capture rate", values: column("capture_rate"), format: (value) => percent(value) }]}
        lineFormat=${(value) => percent(value, 0)} />
      <${DayChart} title="New, repeat and unknown visitors per day"
        hint="Repeat: seen in the store in the 90 days before. Unknown: phones that change their address, which cannot be told apart from one day to the next."
        days=${period.days}
        bars=${[{ label: "New", values: column("new_visitors") }, { label: "Repeat", values: column("repeat_visitors") },
          { label: "Unknown", values: column("unknown_visitors") }]} />
      <${BarChart} title="How long visitors stayed" heading="Time in the store"
        hint="Visitors over the whole period, by time in the store."
        labels=${dwell.map(([bucket]) => bucketLabel(bucket))}
        series=${[{ label: "Visitors", values: dwell.map(([, visits]) => visits) }]} />
    </div>`;
}

// ---- visitors per hour -----------------------------------------------------------------

/** Whole-store rows of the hourly figures added up per hour of the day (UTC). */
function perHour(rows, store) {
  const mine = rows.filter((row) => row.zone === null && (!store || row.store === store));
  return HOURS.map((_, hour) => {
    const inHour = mine.filter((row) => new Date(row.hour).getUTCHours() === hour);
    return { visitors: sumOf(inHour, "visitors"), passers_by: sumOf(inHour, "passers_by") };
  });
}

function HourlyFigures({ state, store, day }) {
  return html`<${Loading} state=${state}>${(rows) => {
    const hours = perHour(rows, store);
    if (!hours.some((hour) => hour.visitors || hour.passers_by)) {
      return html`<p class="empty">No visits on ${dayLabel(day)}.</p>`;
    }
    return html`<${BarChart} title=${`Visitors and passers-by per hour, ${dayLabel(day)}`} heading="Hour (UTC)"
      labels=${HOURS} series=${[
        { label: "Visitors", values: hours.map((hour) => hour.visitors) },
        { label: "Passers-by", values: hours.map((hour) => hour.passers_by) }]} />`;
  }}<//>`;
}

// ---- people present per hour (occupancy) -------------------------------------------------

/** People with one decimal: an estimate averaged over the hour, not a head count. */
function people(value) {
  return value === null || value === undefined ? "—" : value.toFixed(1);
}

/** The stores' rows added up per hour of the day (UTC): mean and peak people, and the
 * addresses heard per minute (what counting addresses would say); null where no gateway
 * reported. */
function occupancyPerHour(rows) {
  return HOURS.map((_, hour) => {
    const inHour = rows.filter((row) => new Date(row.start).getUTCHours() === hour);
    if (!inHour.length) return { people: null, peak: null, addresses: null };
    return { people: sumOf(inHour, "people"), peak: sumOf(inHour, "peak_people"),
      addresses: sumOf(inHour, "addresses") };
  });
}

function OccupancyFigures({ state, day }) {
  return html`<${Loading} state=${state}>${(rows) => {
    if (!rows.length) return html`<p class="empty">No occupancy reported on ${dayLabel(day)}.</p>`;
    const hours = occupancyPerHour(rows);
    const reported = hours.filter((hour) => hour.people !== null);
    const busiest = reported.reduce((top, hour) => (hour.peak > top.peak ? hour : top), reported[0]);
    const mean = (field) => reported.reduce((sum, hour) => sum + hour[field], 0) / reported.length;
    return html`<${BarChart} title=${`People present per hour, ${dayLabel(day)}`} heading="Hour (UTC)"
        hint="The gateways' estimate from Wi-Fi probe requests: people present on average over the hour, each phone counted once however often it changes its address."
        labels=${HOURS} series=${[{ label: "People (average)", values: hours.map((hour) => hour.people), format: people }]} />
      <p class="hint">Busiest minute: ${people(busiest.peak)} people. Over the hours reported, ${people(mean("people"))} people
        on average, while ${people(mean("addresses"))} distinct addresses were heard per minute (what counting addresses would say).</p>`;
  }}<//>`;
}

function Hourly({ view, change, period, busiest }) {
  const day = period.days.includes(view.day) ? view.day : busiest;
  const since = new Date(`${day}T00:00:00Z`);
  const storeQuery = view.store ? `&store=${encodeURIComponent(view.store)}` : "";
  const window = windowQuery(since, new Date(since.getTime() + DAY_MS));
  const hourly = useApi(tenantPath(`/analytics/footfall/hourly?${window}${storeQuery}`));
  const occupancy = useApi(tenantPath(`/analytics/occupancy?${window}&resolution=hour${storeQuery}`));
  return html`<${Section} title="Visitors per hour">
    <div class="row">
      <${TextField} label="Day" type="date" value=${day} min=${period.days[0]} max=${period.days.at(-1)}
        hint="Hours and days are in UTC." onInput=${(value) => value && change({ day: value })} />
    </div>
    <${HourlyFigures} state=${hourly} store=${view.store} day=${day} />
    <h3>People present</h3>
    <${OccupancyFigures} state=${occupancy} day=${day} />
  <//>`;
}

// ---- messages ---------------------------------------------------------------------------

/** Marketing messages per scenario (consent requests left out), with the journeys held out. */
function perScenario(rows) {
  const scenarios = new Map();
  for (const row of rows) {
    if (row.scenario === null || row.transactional) continue;
    const totals = scenarios.get(row.scenario) || { scenario: row.scenario, held_out: 0,
      ...Object.fromEntries(STAGES.map(([stage]) => [stage, 0])) };
    for (const [stage] of STAGES) totals[stage] += row[stage];
    totals.held_out += row.held_out;
    scenarios.set(row.scenario, totals);
  }
  return [...scenarios.values()];
}

function Messages({ view, change, period }) {
  const scenarios = useApi(tenantPath("/scenarios"));
  const funnel = useApi(tenantPath(`/analytics/funnel?${windowQuery(period.since, period.until)}`));
  return html`<${Section} title="Messages">
    <${Loading} state=${funnel}>${(rows) => html`<${Table} caption="Messages per scenario in this period"
      rows=${perScenario(rows)} rowKey=${(row) => row.scenario} empty="No message in this period yet."
      columns=${[["Scenario", (row) => html`<code>${row.scenario}</code>`],
        ...STAGES.map(([stage, label]) => [label, (row) => count(row[stage])]),
        ["Held out", (row) => count(row.held_out)]]} />`}<//>
    <${Loading} state=${scenarios}>${(list) => {
      if (!list.length) return html`<p class="empty">No scenario yet: its funnel shows here once one is saved.</p>`;
      const chosen = list.some((one) => one.key === view.scenario) ? view.scenario : list[0].key;
      return html`<div class="row"><${SelectField} label="Scenario" value=${chosen}
          options=${list.map((one) => [one.key, `${one.spec.name} (${one.key})`])}
          onChange=${(scenario) => change({ scenario })} /></div>
        <${ScenarioReport} key=${chosen} scenarioKey=${chosen} period=${period} />`;
    }}<//>
  <//>`;
}

// ---- the page -----------------------------------------------------------------------------

function storeOptions(stores, rows) {
  const names = new Map((stores || []).map((store) => [store.key, store.name]));
  for (const row of rows || []) if (!names.has(row.store)) names.set(row.store, "");
  const keys = [...names.keys()].sort();
  return [[ALL_STORES, "All stores"], ...keys.map((key) => [key, names.get(key) ? `${names.get(key)} (${key})` : key])];
}

/** The day with the most visitors in the rows, else the period's last (today). */
function busiestDay(rows, period) {
  const days = perDay(rows || [], period.days);
  const best = days.reduce((top, day) => (day.visitors > top.visitors ? day : top), days.at(-1));
  return best.day;
}

function Page() {
  const [view, change] = useView();
  const period = periodOf(view.days);
  const stores = useApi(tenantPath("/stores"));
  const footfall = useApi(tenantPath(`/analytics/footfall?${windowQuery(period.since, period.until)}`));
  const rows = footfall.data && footfall.data.filter((row) => !view.store || row.store === view.store);
  return html`
    <div class="row analytics-view" role="group" aria-label="What to show">
      <${SelectField} label="Store" value=${view.store} options=${storeOptions(stores.data, footfall.data)}
        onChange=${(store) => change({ store })} />
      <${SelectField} label="Period" value=${view.days} options=${PERIODS}
        onChange=${(days) => change({ days, day: "" })} />
    </div>
    <${ErrorNotice} error=${stores.error} title="Could not load the stores" />
    <${Section} title="Footfall">
      <p class="hint">Devices seen by the stores' gateways, ${dayLabel(period.days[0])} to ${dayLabel(period.days.at(-1))} (UTC days).
        These are phones, not people: one person may carry two.</p>
      <${Loading} state=${{ ...footfall, data: rows }}>${(mine) => html`<${FootfallFigures} rows=${mine} period=${period} />`}<//>
    <//>
    <${Hourly} view=${view} change=${change} period=${period} busiest=${busiestDay(rows, period)} />
    <${Messages} view=${view} change=${change} period=${period} />`;
}

mount(Page);
