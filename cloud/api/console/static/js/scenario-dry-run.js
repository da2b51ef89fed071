// Dry runs: a scenario (the stored one, or the draft being edited) run by a scenario
// worker over the tenant's recorded history, sending nothing: POST
// /scenarios/{key}/simulations queues it, GET /simulations/{id} is read every second
// for its progress until the report is there.
import {
  ErrorNotice, Notice, SelectField, Table, api, can, count, html, percent, tenantPath,
  useEffect, useState, when,
} from "console/lib.js";

const WRITE = "scenarios.write";
const PERIODS = [["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]];
/** How often a running dry run is asked for its progress. */
const POLL_MS = 1000;
const FINISHED = new Set(["done", "failed"]);

function Kpi({ value, label }) {
  return html`<div class="kpi"><div class="value">${value}</div><div class="label">${label}</div></div>`;
}

function counted(object) {
  return Object.entries(object).sort((a, b) => b[1] - a[1]);
}

function SimulationReport({ report }) {
  const sends = report.sends.reduce((sum, row) => sum + row.sends, 0);
  const notSent = [["held for quiet hours", report.holds], ["held past their deadline", report.held_past_deadline],
    ["capped", report.capped], ...counted(report.suppressed).map(([name, value]) => [name.replaceAll("_", " "), value])];
  return html`<div class="stack">
    <div class="kpis">
      <${Kpi} value=${count(report.entries)} label="Journeys started" />
      <${Kpi} value=${count(report.held_out)} label="Held out" />
      <${Kpi} value=${count(sends)} label="Messages" />
      <${Kpi} value=${count(report.coupons_issued)} label="Coupons issued" />
      <${Kpi} value=${report.expected_conversions === null ? "—" : report.expected_conversions.toFixed(1)}
        label="Expected conversions" />
    </div>
    <p class="hint">${count(report.triggers)} recorded triggers replayed in ${report.rounds_s.toFixed(1)} s.
      Expected conversions apply the rates the shop observed in the 90 days before the period's end.</p>
    <${Table} caption="Messages per channel and variant" rowKey=${(row) => `${row.channel}/${row.variant}`}
      rows=${report.sends} empty="No message would have been sent." columns=${[
        ["Channel", (row) => row.channel], ["Variant", (row) => row.variant ?? "—"],
        ["Messages", (row) => count(row.sends)], ["Held first", (row) => count(row.held)]]} />
    <${Table} caption="Sends not made, or not at once" rowKey=${(row) => row[0]} rows=${notSent.filter((row) => row[1])}
      empty="Every send went out at once." columns=${[["Why", (row) => row[0]], ["Sends", (row) => count(row[1])]]} />
    <${Table} caption="How journeys ended" rowKey=${(row) => row[0]} rows=${counted(report.exits)}
      empty="No journey." columns=${[["Ending", (row) => (row[0] === "open" ? "still running at the end" : row[0])],
        ["Journeys", (row) => count(row[1])]]} />
    <${Table} caption="Expected opens and conversions per channel" rowKey=${(row) => row.channel}
      rows=${report.expected} empty="No message, nothing to expect." columns=${[
        ["Channel", (row) => row.channel], ["Messages", (row) => count(row.sends)],
        ["Rates from", (row) => (row.basis === "none" ? "no sends yet" : `${row.basis} (${count(row.basis_sends)} sends)`)],
        ["Open rate", (row) => percent(row.open_rate)], ["Conversion rate", (row) => percent(row.conversion_rate)],
        ["Expected conversions", (row) => (row.expected_conversions === null ? "—" : row.expected_conversions.toFixed(1))]]} />
    <h3>Sample journeys</h3>
    ${report.sample.length === 0 && html`<p class="empty">No journey to show.</p>`}
    ${report.sample.map((journey, index) => html`<details key=${index} class="sample-journey">
      <summary><code>${journey.customer_id}</code> · ${journey.entry_kind} ${when(journey.entered_at)}
        · ${journey.holdout ? "held out" : `variant ${journey.variant ?? "—"}`} · ${journey.reason ?? journey.status}</summary>
      <ol>${journey.steps.map((step, number) => html`<li key=${number}><code>${step.step}</code>: ${step.outcome}
        ${step.reason ? ` (${step.reason})` : step.detail ? ` (${step.detail})` : ""} at ${when(step.at)}</li>`)}</ol>
    </details>`)}
  </div>`;
}

function JobView({ job }) {
  if (job.status === "failed") {
    return html`<${Notice} kind="error"><p><strong>The dry run failed:</strong> ${job.error}</p><//>`;
  }
  if (job.status !== "done") {
    const label = job.status === "queued" ? "Waiting for a worker…"
      : `Replayed ${count(job.triggers_done)} of ${job.triggers_total === null ? "…" : count(job.triggers_total)} triggers`;
    return html`<div class="stack" aria-live="polite">
      <label>${label}<progress max="1" value=${job.progress}>${percent(job.progress, 0)}</progress></label></div>`;
  }
  return html`<${SimulationReport} report=${job.report} />`;
}

/** Dry runs of scenario `scenarioKey`: of the stored scenario, or with `draft` (a
 * function giving the draft's body) of what is being edited. */
export function DryRun({ scenarioKey, draft }) {
  const [days, setDays] = useState("30");
  const [job, setJob] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (draft) return undefined;
    let live = true;
    api("GET", tenantPath(`/scenarios/${encodeURIComponent(scenarioKey)}/simulations`))
      .then((rows) => { if (live && rows.length) setJob(rows[0]); }, () => {});
    return () => { live = false; };
  }, [scenarioKey]);
  useEffect(() => {
    if (!job || FINISHED.has(job.status)) return undefined;
    const timer = setTimeout(async () => {
      try {
        setJob(await api("GET", tenantPath(`/simulations/${job.id}`)));
      } catch (failure) {
        setError(failure);
      }
    }, POLL_MS);
    return () => clearTimeout(timer);
  }, [job]);

  async function start() {
    setBusy(true);
    setError(null);
    try {
      const body = { days: Number(days), ...(draft ? { spec: draft() } : {}) };
      setJob(await api("POST", tenantPath(`/scenarios/${encodeURIComponent(scenarioKey)}/simulations`), body));
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const running = job && !FINISHED.has(job.status);
  return html`<div class="stack dry-run">
    <p class="hint">${draft ? "Runs the scenario as edited here, unsaved," : "Runs the saved scenario"} over
      what the shop recorded (visits, orders, opens), with the same engine on a copy: nothing is sent,
      nothing changes.</p>
    ${can(WRITE) && html`<div class="row">
      <${SelectField} label="History" value=${days} options=${PERIODS} onChange=${setDays} />
      <button type="button" class="secondary" disabled=${busy || running || !scenarioKey} onClick=${start}>
        ${running ? "Dry run running…" : "Start dry run"}</button></div>`}
    <${ErrorNotice} error=${error} title="The dry run did not start" />
    ${job && html`<p class="scenario-meta">Dry run ${job.id} · ${job.scenario_version === null ? "draft"
      : `version ${job.scenario_version}`} · ${when(job.since)} to ${when(job.until)} · asked by ${job.requested_by}</p>
      <${JobView} job=${job} />`}
  </div>`;
}
