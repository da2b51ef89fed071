// A scenario's report: its journeys by group (the holdout beside each A/B variant) with
// how many ordered within 30 days of entering, the uplift over the holdout, and the
// message funnel per step and variant over a chosen period, as tables and bar charts.
import { BarChart } from "console/charts.js";
import {
  Loading, SelectField, count, html, percent, tenantPath, useApi, useState,
} from "console/lib.js";

const DAY_MS = 86_400_000;
const PERIODS = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"], ["365", "Last year"]];
/** Funnel stages in the order messages go through them. */
export const STAGES = [["queued", "Triggered"], ["held", "Held (quiet hours)"], ["sent", "Sent"],
  ["delivered", "Delivered"], ["opened", "Opened"], ["clicked", "Clicked"], ["converted", "Converted"]];
/** Below this many journeys held out, a difference in conversion is mostly chance: the
 * uplift is then shown as a rough indication only. */
const HOLDOUT_FOR_UPLIFT = 100;

function groupLabel(group) {
  if (group === "holdout") return "Holdout (nothing sent)";
  if (group === "all") return "Treated";
  return `Variant ${group}`;
}

/** Conversion of everyone treated (every variant) against the holdout's. */
function uplift(rows) {
  const holdout = rows.find((row) => row.group === "holdout");
  const treated = rows.filter((row) => row.group !== "holdout");
  const journeys = treated.reduce((sum, row) => sum + row.journeys, 0);
  const converted = treated.reduce((sum, row) => sum + row.converted, 0);
  const rate = journeys ? converted / journeys : null;
  return { holdout, rate, journeys, points: holdout && rate !== null ? rate - holdout.conversion_rate : null };
}

function JourneyReport({ rows: unordered }) {
  const rows = [...unordered].sort((a, b) => (a.group === "holdout" ? -1 : b.group === "holdout" ? 1 : 0));
  if (!rows.length) return html`<p class="empty">No journey yet: nobody has entered this scenario.</p>`;
  const { holdout, rate, points } = uplift(rows);
  const statuses = [...new Set(rows.flatMap((row) => Object.keys(row.statuses)))].sort();
  const metrics = [
    ["Journeys", (row) => count(row.journeys)],
    ["Ordered within 30 days", (row) => count(row.converted)],
    ["Conversion", (row) => percent(row.conversion_rate)],
    ...statuses.map((status) => [`Journeys ${status.replaceAll("_", " ")}`, (row) => count(row.statuses[status] ?? 0)]),
  ];
  return html`
    <div class="kpis">
      <div class="kpi"><div class="value">${percent(rate)}</div><div class="label">Treated conversion</div></div>
      <div class="kpi"><div class="value">${holdout ? percent(holdout.conversion_rate) : "—"}</div>
        <div class="label">Holdout conversion</div></div>
      <div class="kpi"><div class="value">${points === null ? "—" : `${points >= 0 ? "+" : ""}${(points * 100).toFixed(1)} pt`}</div>
        <div class="label">Uplift over the holdout</div></div>
    </div>
    ${!holdout && html`<p class="hint">No holdout group: set a holdout percentage to measure what the scenario changes.</p>`}
    ${holdout && holdout.journeys < HOLDOUT_FOR_UPLIFT && html`<p class="hint">${`Only ${count(holdout.journeys)} ${
      holdout.journeys === 1 ? "journey" : "journeys"} held out so far`}: the uplift is a rough indication until about ${HOLDOUT_FOR_UPLIFT}.</p>`}
    <div class="table-wrap" tabindex="0" role="region" aria-label="Journeys by group, side by side"><table>
      <caption>Journeys by group, side by side</caption>
      <thead><tr><th scope="col">Measure</th>${rows.map((row) => html`<th scope="col" class="number">${groupLabel(row.group)}</th>`)}</tr></thead>
      <tbody>${metrics.map(([name, cell]) => html`<tr><th scope="row">${name}</th>
        ${rows.map((row) => html`<td class="number">${cell(row)}</td>`)}</tr>`)}</tbody>
    </table></div>
    <${BarChart} title="Conversion by group" heading="Group" labels=${rows.map((row) => groupLabel(row.group))}
      series=${[{ label: "Conversion", values: rows.map((row) => row.conversion_rate), format: (value) => percent(value, 0) }]} />`;
}

function FunnelReport({ rows }) {
  const marketing = rows.filter((row) => row.step !== null);
  const heldOut = rows.filter((row) => row.step === null).reduce((sum, row) => sum + row.held_out, 0);
  if (!marketing.length && !heldOut) return html`<p class="empty">No message in this period.</p>`;
  const totals = STAGES.map(([stage]) => marketing.filter((row) => !row.transactional).reduce((sum, row) => sum + row[stage], 0));
  const columns = [
    ["Step", (row) => html`<code>${row.step}</code>${row.transactional ? " (consent request)" : ""}`],
    ["Variant", (row) => row.variant ?? "—"],
    ...STAGES.map(([stage, label]) => [label, (row) => count(row[stage])]),
    ["Failed", (row) => count(row.failed)], ["Suppressed", (row) => count(row.suppressed)],
    ["Expired", (row) => count(row.expired)], ["Pending", (row) => count(row.pending)],
  ];
  const caption = "Messages per step and variant (triggered: the messages the step queued)";
  return html`
    <p>${count(heldOut)} journey${heldOut === 1 ? "" : "s"} held out in this period (nothing sent to them).</p>
    <div class="table-wrap" tabindex="0" role="region" aria-label=${caption}><table>
      <caption>${caption}</caption>
      <thead><tr>${columns.map(([header], index) => html`<th scope="col" class=${index > 1 ? "number" : ""}>${header}</th>`)}</tr></thead>
      <tbody>${marketing.map((row) => html`<tr key=${`${row.step}/${row.variant}/${row.transactional}`}>
        ${columns.map(([, cell], index) => html`<td class=${index > 1 ? "number" : ""}>${cell(row)}</td>`)}</tr>`)}</tbody>
    </table></div>
    <${BarChart} title="Messages by stage" heading="Stage" labels=${STAGES.map(([, label]) => label)}
      series=${[{ label: "Messages", values: totals }]} />`;
}

/** The report of scenario `scenarioKey`; its funnel covers `period` ({since, until},
 * Dates) when the page around it chooses one, else a period picked here. */
export function ScenarioReport({ scenarioKey, period }) {
  const [days, setDays] = useState("30");
  const [now] = useState(() => new Date(Date.now() + 60_000));
  const { since, until } = period || { since: new Date(now.getTime() - Number(days) * DAY_MS), until: now };
  const report = useApi(tenantPath(`/scenarios/${encodeURIComponent(scenarioKey)}/report`));
  const funnel = useApi(tenantPath(`/analytics/funnel?scenario=${encodeURIComponent(scenarioKey)}`
    + `&since=${encodeURIComponent(since.toISOString())}&until=${encodeURIComponent(until.toISOString())}`));
  return html`<div class="stack scenario-report">
    <h3>Journeys and conversion</h3>
    <p class="hint">Every journey so far; an order within 30 days of entering counts as converted.</p>
    <${Loading} state=${report}>${(rows) => html`<${JourneyReport} rows=${rows} />`}<//>
    <div class="row funnel-head"><h3>Message funnel</h3>
      ${!period && html`<${SelectField} label="Period" value=${days} options=${PERIODS} onChange=${setDays} />`}</div>
    <${Loading} state=${funnel}>${(rows) => html`<${FunnelReport} rows=${rows} />`}<//>
  </div>`;
}
