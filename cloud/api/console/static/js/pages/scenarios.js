// Scenarios: the list (active or paused), one scenario as a flow with its report, and the
// editor. Everything goes through the API: PUT /scenarios/{key} saves (and switches on)
// a scenario, DELETE switches it off (running journeys end); saving it again is how it
// comes back on. The page's address names the scenario shown (?key=...) or a new one (?new).
import {
  ConfirmButton, ErrorNotice, Loading, Notice, ReadOnlyNote, Section, Table, api, can, html,
  mount, tenantPath, useApi, useState, when,
} from "console/lib.js";
import { Flow, describeEntry } from "console/scenario-flow.js";
import { ScenarioEditor } from "console/scenario-editor.js";
import { DryRun } from "console/scenario-dry-run.js";
import { ScenarioReport } from "console/scenario-report.js";

const WRITE = "scenarios.write";
const BLANK = {
  key: "", name: "", entry: { event: "cart.abandoned" }, exit_on: ["order.created"],
  holdout_percent: 0, variants: [], caps: [], steps: [],
};

function scenarioUrl(key) {
  return key ? `?key=${encodeURIComponent(key)}` : location.pathname;
}

function StateBadge({ active }) {
  return html`<span class=${`status ${active ? "ok" : "idle"}`}>${active ? "active" : "paused"}</span>`;
}

/** Switch a scenario off (DELETE) or on again (PUT of its saved spec). */
async function setActive(scenario, active) {
  const path = tenantPath(`/scenarios/${encodeURIComponent(scenario.key)}`);
  if (!active) {
    const answer = await api("DELETE", path);
    return `Scenario ${scenario.key} paused: no new journeys; ${answer.journeys_ended} running journey${answer.journeys_ended === 1 ? "" : "s"} ended.`;
  }
  await api("PUT", path, scenario.spec);
  return `Scenario ${scenario.key} is active again.`;
}

function PauseButton({ scenario, onDone, onError }) {
  if (!can(WRITE)) return null;
  const run = async (active) => {
    try {
      onDone(await setActive(scenario, active));
    } catch (failure) {
      onError(failure);
    }
  };
  return scenario.active
    ? html`<${ConfirmButton} label=${`Pause ${scenario.key}`} confirm=${`Pause ${scenario.key}: end its running journeys`}
        onConfirm=${() => run(false)} />`
    : html`<button type="button" class="secondary" onClick=${() => run(true)}>Activate ${scenario.key}</button>`;
}

function ScenarioList() {
  const scenarios = useApi(tenantPath("/scenarios"));
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);
  const done = (text) => { setError(null); setMessage(text); scenarios.reload(); };
  return html`<${Section} title="Scenarios" actions=${can(WRITE) && html`
      <a class="button" href="?new">New scenario</a>`}>
    <${ReadOnlyNote} permission=${WRITE} />
    ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
    <${ErrorNotice} error=${error} />
    <${Loading} state=${scenarios}>${(rows) => html`<${Table} caption="The tenant's scenarios"
      rowKey=${(row) => row.key} rows=${rows} empty="No scenario yet." columns=${[
        ["Key", (row) => html`<a href=${scenarioUrl(row.key)}><code>${row.key}</code></a>`],
        ["Name", (row) => row.spec.name],
        ["Entry", (row) => describeEntry(row.spec.entry)],
        ["Steps", (row) => row.spec.steps.length],
        ["State", (row) => html`<${StateBadge} active=${row.active} />`],
        ["Version", (row) => row.version],
        ["Changed", (row) => when(row.updated_at)],
        [html`<span class="visually-hidden">Actions</span>`, (row) => html`<div class="actions">
          <a class="button secondary small" href=${scenarioUrl(row.key)} aria-label=${`Open ${row.key}`}>Open</a>
          <${PauseButton} scenario=${row} onDone=${done} onError=${setError} />
        </div>`],
      ]} />`}<//>
  <//>`;
}

function ScenarioDetail({ scenarioKey, savedNow }) {
  const scenario = useApi(tenantPath(`/scenarios/${encodeURIComponent(scenarioKey)}`));
  const [editing, setEditing] = useState(false);
  const [message, setMessage] = useState(savedNow ? `Scenario ${scenarioKey} saved.` : null);
  const [error, setError] = useState(null);
  const done = (text) => { setError(null); setMessage(text); scenario.reload(); };
  return html`<p><a href=${location.pathname}>← All scenarios</a></p>
    <${Loading} state=${scenario}>${(row) => (editing
      ? html`<${Section} title=${`Edit scenario ${row.key}`}>
          <${ScenarioEditor} initial=${row.spec} isNew=${false} paused=${!row.active} onCancel=${() => setEditing(false)}
            onSaved=${(saved) => { setEditing(false); done(`Scenario ${saved.key} saved (version ${saved.version}).`); }} />
        <//>`
      : html`<${Section} title=${row.spec.name} actions=${can(WRITE) && html`
          <button type="button" onClick=${() => { setMessage(null); setEditing(true); }}>Edit</button>
          <${PauseButton} scenario=${row} onDone=${done} onError=${setError} />`}>
          <${ReadOnlyNote} permission=${WRITE} />
          ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
          <${ErrorNotice} error=${error} />
          <p class="scenario-meta"><code>${row.key}</code> · <${StateBadge} active=${row.active} />
            · version ${row.version} · changed ${when(row.updated_at)}</p>
          <${Flow} spec=${row.spec} label=${`Flow of ${row.spec.name}`} />
        <//>
        <${Section} title="Dry run"><${DryRun} scenarioKey=${row.key} /><//>
        <${Section} title="Report"><${ScenarioReport} scenarioKey=${row.key} /><//>`)}
    <//>`;
}

function NewScenario() {
  if (!can(WRITE)) {
    return html`<${ReadOnlyNote} permission=${WRITE} /><p><a href=${location.pathname}>← All scenarios</a></p>`;
  }
  return html`<p><a href=${location.pathname}>← All scenarios</a></p>
    <${Section} title="New scenario">
      <${ScenarioEditor} initial=${BLANK} isNew onCancel=${() => location.assign(location.pathname)}
        onSaved=${(saved) => location.assign(`${scenarioUrl(saved.key)}&saved=${saved.version}`)} />
    <//>`;
}

function Page() {
  const query = new URLSearchParams(location.search);
  if (query.has("new")) return html`<${NewScenario} />`;
  const key = query.get("key");
  if (!key) return html`<${ScenarioList} />`;
  const savedNow = query.has("saved");
  if (savedNow) history.replaceState(null, "", scenarioUrl(key)); // a reload says it no more
  return html`<${ScenarioDetail} scenarioKey=${key} key=${key} savedNow=${savedNow} />`;
}

mount(Page);
