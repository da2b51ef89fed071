// Every configuration change: who (a member or an API key), what, when, and the values
// before and after. Newest first, filtered by kind of change, paged back.
import {
  Loading, Section, SelectField, Table, html, mount, tenantPath, useApi, useState, when,
} from "console/lib.js";

const PAGE = 50;
const KINDS = [["", "every change"], ["offer.", "offers"], ["complements.", "complement rules"],
  ["scenario.", "scenarios"], ["template.", "templates"], ["store.", "stores"],
  ["geofence.", "geofences"], ["key.", "API keys"], ["member.", "members"],
  ["customer.", "customer erasures"]];

const IGNORED = ["updated_at", "version"];
const show = (value) => (value === undefined ? "—" : JSON.stringify(value));

function Change({ entry }) {
  const { before, after } = entry;
  if (before === null && after === null) return "—";
  const fields = changedFields(before, after);
  const values = [["Before", before], ["After", after]].filter(([, value]) => value !== null);
  return html`${fields && html`<table class="diff">
      <caption class="visually-hidden">Fields changed</caption>
      <thead><tr><th scope="col">Field</th><th scope="col">Before</th><th scope="col">After</th></tr></thead>
      <tbody>${fields.map((name) => html`<tr key=${name}><th scope="row">${name}</th>
        <td class="mono">${show(before[name])}</td><td class="mono">${show(after[name])}</td></tr>`)}</tbody>
    </table>`}
    <details><summary>${fields ? "all values" : "values"}</summary>
      ${values.map(([title, value]) => html`<h3>${title}</h3>
        <pre class="mono">${JSON.stringify(value, null, 2)}</pre>`)}
    </details>`;
}

/** The names of the fields whose value changed, when both sides are objects. */
function changedFields(before, after) {
  if (!before || !after || typeof before !== "object" || typeof after !== "object"
      || Array.isArray(before) || Array.isArray(after)) return null;
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => !IGNORED.includes(name)
    && JSON.stringify(before[name]) !== JSON.stringify(after[name]));
}

function Audit() {
  const [kind, setKind] = useState("");
  const [before, setBefore] = useState([]);
  const cursor = before.length ? `&before_id=${before[before.length - 1]}` : "";
  const filter = kind ? `&action=${encodeURIComponent(kind)}` : "";
  const page = useApi(tenantPath(`/audit?limit=${PAGE}${filter}${cursor}`));

  return html`<${Section} title="Changes" actions=${html`
      <${SelectField} label="Show" value=${kind} options=${KINDS}
        onChange=${(value) => { setKind(value); setBefore([]); }} />`}>
    <${Loading} state=${page}>${(rows) => html`
      <${Table} caption="Newest first" rows=${rows} rowKey=${(entry) => entry.id}
        empty="No change recorded." columns=${[
          ["When", (entry) => when(entry.at)],
          ["Who", (entry) => html`${entry.actor}<br /><span class="hint">${
            entry.actor_kind === "key" ? "API key" : entry.actor_kind === "cli" ? "command line" : "member"}</span>`],
          ["What", (entry) => html`<code>${entry.action}</code>`],
          ["On", (entry) => entry.target],
          ["Change", (entry) => html`<${Change} entry=${entry} />`],
        ]} />
      <div class="actions">
        ${before.length > 0 && html`<button type="button" class="secondary"
          onClick=${() => setBefore(before.slice(0, -1))}>Newer</button>`}
        ${rows.length === PAGE && html`<button type="button" class="secondary"
          onClick=${() => setBefore([...before, rows[rows.length - 1].id])}>Older</button>`}
      </div>`}<//>
  <//>`;
}

mount(Audit);
