// Stores (PUT/DELETE /stores/{key}) and the health of each store's gateways, live from
// the presence stream (its gateway messages: a gateway going offline shows within
// seconds, and every open page shares one database poll per tenant instead of each
// polling GET /gateways). Per store, its registered gateways (/stores/{key}/gateways):
// added with a one-time enrolment code shown once, given a new code, revoked, and
// configured (zones and RSSI thresholds), with the version saved against the version
// the gateway's heartbeat says is in force. A gateway that reports but is not registered
// was enrolled offline (`vitrina-provision enrol-gateway`): it is shown as such, with no
// action that the API would refuse. A gateway's details add its health over the last day
// (/stores/{key}/gateways/{id}/health): alerts, frames per minute per source, the agent's
// CPU and the board's temperature, each chart with its figures as a table.
import { TimeChart } from "console/charts.js";
import {
  ConfirmButton, Dialog, ErrorNotice, Loading, Notice, ReadOnlyNote, Section, Table,
  TextField, api, ago, can, context, count, html, mount, problemsAt, tenantPath, useApi, useState,
} from "console/lib.js";
import { ConnectionBadge, useLiveStream, useNow } from "console/live-stream.js";
import {
  QuietHoursField, TimeZoneSelect, ownText, quietInvalid, quietProblems,
} from "console/quiet-hours.js";

const WRITE = "stores.write";
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

const STATES = {
  online: ["online", "ok"],
  silent: ["no heartbeat", "bad"],
  offline: ["offline", "bad"],
};

function TimeZoneField({ value, onChange, error }) {
  return html`<${TimeZoneSelect} value=${value} onChange=${onChange} error=${error}
    hint="The zone of the store's opening hours (IANA, e.g. Europe/Madrid), and the clock of the messages its visits start for customers who gave none." />`;
}

/** The API's problems with one field: a 422's list, or its message naming the field. */
function fieldError(error, name) {
  const listed = problemsAt(error, ["body", name]).map((problem) => problem.msg).join("; ");
  if (listed) return listed;
  const detail = typeof error?.body?.detail === "string" ? error.body.detail : "";
  return detail.startsWith(`${name}: `) ? detail.slice(name.length + 2) : null;
}

function StoreForm({ initial, isNew, onSaved, onCancel }) {
  const [form, setForm] = useState(initial);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (value) => setForm((previous) => ({ ...previous, [name]: value }));
  const keyError = isNew && form.key && !KEY_PATTERN.test(form.key)
    ? "Letters, digits, dot, dash and underscore; no spaces." : null;

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const saved = await api("PUT", tenantPath(`/stores/${encodeURIComponent(form.key)}`),
        { name: form.name, time_zone: form.time_zone, quiet_hours: form.quiet_hours ?? null });
      onSaved(saved);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const nameError = fieldError(error, "name");
  const zoneError = fieldError(error, "time_zone");
  const quiet = quietProblems(error, ["body", "quiet_hours"]);
  const located = nameError || zoneError || quiet.start || quiet.end || quiet.whole;
  return html`<form onSubmit=${save} class="stack" aria-label="Store">
    <${ErrorNotice} error=${located ? null : error} title="Store not saved" />
    ${located && html`<${Notice} kind="error"><p><strong>Store not saved:</strong>${" "}see
      the fields marked below.</p><//>`}
    <div class="row">
      <${TextField} label="Key" value=${form.key} onInput=${set("key")} required disabled=${!isNew}
        error=${keyError} hint="How gateways and the API name the store; it cannot change." />
      <${TextField} label="Name" value=${form.name} onInput=${set("name")} required maxlength="60"
        error=${nameError} />
    </div>
    <${TimeZoneField} value=${form.time_zone} onChange=${set("time_zone")} error=${zoneError} />
    <${QuietHoursField} value=${form.quiet_hours} onChange=${set("quiet_hours")} problems=${quiet}
      inherit="The shop's (Shop settings)" off="None at this store: messages at any hour"
      hint="For the messages a visit to this store starts (presence, geofences); on the customer's clock, else the store's." />
    <div class="actions">
      <button type="submit" disabled=${busy || keyError || !form.key || quietInvalid(form.quiet_hours)}>${busy ? "Saving…" : "Save store"}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

function LastHeartbeat({ gateway, now }) {
  const at = gateway.status_sent_at;
  return html`<time datetime=${at} title=${fullTime.format(new Date(at))}>${ago(at, now)}</time>
    <div class="hint">${fullTime.format(new Date(at))}</div>`;
}

function Sources({ sources }) {
  const entries = Object.entries(sources || {});
  if (entries.length === 0) return html`<span class="hint">none reported</span>`;
  return html`<ul class="gateway-sources">${entries.map(([name, health]) => html`<li key=${name}>
    <span class=${`status ${health.alive ? "ok" : "bad"}`}>${name} ${health.alive ? "running" : "down"}</span>
    ${" "}${count(health.frames)} frames, ${count(health.errors)} errors${health.restarts ? `, ${count(health.restarts)} restarts` : ""}
    ${health.last_error && html`<div class="hint">Last error: ${health.last_error}</div>`}
  </li>`)}</ul>`;
}

function GatewayState({ gateway }) {
  const [label, kind] = STATES[gateway.state] || [gateway.state, "idle"];
  return html`<span class=${`status ${kind}`}>${label}</span>`;
}

function EnrolmentNote() {
  return html`<div class="enrolment">
    <p class="hint">To enrol a gateway, use <strong>Add gateway</strong> under its store: the
      console shows a one-time code and the command to run on the device
      (<code>vitrina-edge enrol --code XXXX-XXXX --cloud ${location.origin}</code>).
      A
      gateway without network access to the console is set up offline
      with <code>vitrina-provision enrol-gateway</code> on the broker's host (the README tells
      how). A gateway appears in the health table with its first heartbeat.</p>
  </div>`;
}

const STATE_LABELS = {
  pending: ["waiting for enrolment", "idle"],
  enrolled: ["enrolled", "ok"],
  revoked: ["revoked", "bad"],
};
const OFFLINE_ENROLLED = ["not registered (enrolled offline)", "idle"];

/** How a reporting gateway stands in the registry (`registered`: its store's rows, null
 * while they load): [label, kind, its row or null]. */
function registration(gateway, registered) {
  if (!registered) return ["checking…", "idle", null];
  const row = registered.find((candidate) => candidate.gateway === gateway.gateway);
  if (!row) return [...OFFLINE_ENROLLED, null];
  return [...(STATE_LABELS[row.state] || [row.state, "idle"]), row];
}

function Registration({ gateway, registered }) {
  const [label, kind] = registration(gateway, registered);
  return html`<span class=${`status ${kind}`}>${label}</span>`;
}

function gatewaysPath(store, rest = "") {
  return tenantPath(`/stores/${encodeURIComponent(store)}/gateways${rest}`);
}

/** "v2 saved, v1 in force": what the cloud wants against what the gateway runs. */
function ConfigVersions({ gateway }) {
  if (!gateway.config_version) return html`<span class="hint">the gateway's own file</span>`;
  const applied = gateway.applied_config_version;
  const agreed = applied === gateway.config_version;
  return html`<span class=${`status ${agreed ? "ok" : "idle"}`}>
    v${gateway.config_version} saved, ${applied ? `v${applied} in force` : "not yet in force"}</span>`;
}

function IssuedCode({ issued }) {
  return html`<div class="enrolment" aria-live="polite">
    <${Notice} kind="success"><p>Gateway <code>${issued.gateway.gateway}</code> added. Its
      enrolment code is shown <strong>only now</strong>; it works once, until
      ${fullTime.format(new Date(issued.expires_at))}.</p><//>
    <p>Enrolment code: <strong class="enrolment-code">${issued.code}</strong></p>
    <p class="hint">On the gateway, run:</p>
    <pre><code>${issued.command}</code></pre>
  </div>`;
}

function AddGatewayForm({ store, onIssued, onCancel }) {
  const [gateway, setGateway] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function add(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onIssued(await api("POST", gatewaysPath(store.key), { gateway }));
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const idError = fieldError(error, "gateway");
  return html`<form onSubmit=${add} class="stack" aria-label="Add gateway">
    <${ErrorNotice} error=${idError ? null : error} title="Gateway not added" />
    <${TextField} label="Gateway id" value=${gateway} onInput=${setGateway} required
      error=${idError} hint="How the gateway names itself in its topics, e.g. door-1 (a-z, 0-9, - and _)." />
    <div class="actions">
      <button type="submit" disabled=${busy || !gateway}>${busy ? "Adding…" : "Add and show its code"}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

const EMPTY_ZONE = { zone: "", min_rssi: "" };

function numberOrNull(value) {
  return value === "" || value === null || value === undefined ? null : Number(value);
}

function ConfigForm({ store, gateway, writable, onSaved, onCancel }) {
  const state = useApi(gatewaysPath(store, `/${encodeURIComponent(gateway)}/config`));
  return html`<${Loading} state=${state}>${(config) => html`<${ConfigEditor} config=${config}
    store=${store} gateway=${gateway} writable=${writable} onSaved=${onSaved} onCancel=${onCancel} />`}<//>`;
}

function AppliedNote({ config }) {
  const applied = config.applied;
  const inForce = applied?.version ? `version ${applied.version}` : "none of the cloud's versions yet";
  const waiting = config.desired_version > 0 && !config.published_at;
  return html`<div class="config-versions">
    <p>Saved: <strong>${config.desired_version ? `version ${config.desired_version}` : "nothing yet"}</strong>.
      In force on the gateway: <strong>${inForce}</strong>.</p>
    ${waiting && html`<${Notice} kind="info"><p>${config.delivery}.
      ${config.next_publish_at && ` Next try: ${fullTime.format(new Date(config.next_publish_at))}.`}</p><//>`}
    ${applied?.refused_version && html`<${Notice} kind="error"><p>The gateway refused version
      ${applied.refused_version} and keeps the last good one: ${applied.refused_reason}</p><//>`}
  </div>`;
}

function ConfigEditor({ config, store, gateway, writable, onSaved, onCancel }) {
  const desired = config.desired || {};
  const [floor, setFloor] = useState(desired.rssi_floor ?? "");
  const [zones, setZones] = useState((desired.zones || []).map((zone) => ({ ...zone })));
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const setZone = (index, name) => (value) => setZones((previous) => previous.map(
    (zone, at) => (at === index ? { ...zone, [name]: value } : zone)));

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body = { ...desired };
    delete body.version;
    delete body.schema_version;
    body.rssi_floor = numberOrNull(floor);
    body.zones = zones.map((zone) => ({ zone: zone.zone, min_rssi: numberOrNull(zone.min_rssi) }));
    try {
      onSaved(await api("PUT", gatewaysPath(store, `/${encodeURIComponent(gateway)}/config`), body));
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const at = (...path) => problemsAt(error, ["body", ...path]).map((problem) => problem.msg).join("; ") || null;
  const located = error?.problems?.length > 0;
  return html`<form onSubmit=${save} class="stack" aria-label="Gateway configuration">
    <${AppliedNote} config=${config} />
    <${ErrorNotice} error=${located ? null : error} title="Configuration not saved" />
    ${located && html`<${Notice} kind="error"><p><strong>Configuration not saved:</strong>${" "}see
      the fields marked below.</p><//>`}
    <${TextField} label="RSSI floor (dBm)" type="number" value=${floor} onInput=${setFloor}
      error=${at("rssi_floor")} hint="Sightings weaker than this are ignored (-127 to 20)." />
    <fieldset class="zones">
      <legend>Zones, strongest signal first</legend>
      <p class="hint">A device is in the first zone whose minimum RSSI its signal reaches;
        otherwise in the gateway's default zone.</p>
      ${zones.map((zone, index) => html`<div class="row" key=${index}>
        <${TextField} label=${`Zone ${index + 1} name`} value=${zone.zone}
          onInput=${setZone(index, "zone")} error=${at("zones", index, "zone")} />
        <${TextField} label=${`Zone ${index + 1} minimum RSSI (dBm)`} type="number"
          value=${zone.min_rssi} onInput=${setZone(index, "min_rssi")}
          error=${at("zones", index, "min_rssi")} />
        <button type="button" class="secondary small" aria-label=${`Remove zone ${index + 1}`}
          onClick=${() => setZones((previous) => previous.filter((_, i) => i !== index))}>Remove</button>
      </div>`)}
      <p class="field-error">${at("zones")}</p>
      <button type="button" class="secondary small"
        onClick=${() => setZones((previous) => [...previous, { ...EMPTY_ZONE }])}>Add zone</button>
    </fieldset>
    <div class="actions">
      ${writable && html`<button type="submit" disabled=${busy}>${busy ? "Saving…" : "Save and send to the gateway"}</button>`}
      <button type="button" class="secondary" onClick=${onCancel}>Close</button>
    </div>
  </form>`;
}

function RegisteredGateways({ store, registered, writable }) {
  const [adding, setAdding] = useState(false);
  const [issued, setIssued] = useState(null);
  const [configuring, setConfiguring] = useState(null);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);

  async function act(run, done) {
    setError(null);
    setMessage(null);
    try {
      await run();
      setMessage(done);
    } catch (failure) {
      setError(failure);
    }
    registered.reload();
  }

  const revoke = (row) => act(() => api("DELETE", gatewaysPath(store.key, `/${encodeURIComponent(row.gateway)}`)),
    `Gateway ${row.gateway} revoked: its broker login is gone.`);
  const newCode = (row) => act(async () => {
    setIssued(await api("POST", gatewaysPath(store.key, `/${encodeURIComponent(row.gateway)}/code`)));
    setAdding(true);
  }, null);

  return html`<div class="registered-gateways">
    ${writable && html`<div class="actions"><button type="button" class="small"
      aria-label=${`Add gateway to ${store.name}`}
      onClick=${() => { setIssued(null); setAdding(true); }}>Add gateway</button></div>`}
    ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
    <${ErrorNotice} error=${error} title="That did not work" />
    <${Loading} state=${registered}>${(rows) => html`<${Table}
      caption=${`Enrolment of ${store.name}`} rows=${rows} rowKey=${(row) => row.gateway}
      empty="No gateway added from the console for this store yet."
      columns=${[
        ["Gateway", (row) => html`<code>${row.gateway}</code>`],
        ["Enrolment", (row) => {
          const [label, kind] = STATE_LABELS[row.state] || [row.state, "idle"];
          return html`<span class=${`status ${kind}`}>${label}</span>
            ${row.state === "pending" && row.code_expires_at && html`<div class="hint">code valid until
              ${fullTime.format(new Date(row.code_expires_at))}</div>`}
            ${row.state === "enrolled" && !row.receives_keys && html`<div class="hint">
              re-enrol to receive keys remotely</div>`}`;
        }],
        ["Configuration", (row) => html`<${ConfigVersions} gateway=${row} />`],
        ["", (row) => row.state !== "revoked" && html`<div class="actions">
          <button type="button" class="secondary small" aria-label=${`Configure gateway ${row.gateway}`}
            onClick=${() => setConfiguring(row.gateway)}>${writable ? "Configure" : "Configuration"}</button>
          ${writable && row.state === "pending" && html`<button type="button" class="secondary small"
            aria-label=${`New code for gateway ${row.gateway}`} onClick=${() => newCode(row)}>New code</button>`}
          ${writable && html`<${ConfirmButton} label=${`Revoke ${row.gateway}`}
            confirm=${`Really revoke gateway ${row.gateway}`} onConfirm=${() => revoke(row)} />`}
        </div>`],
      ]} />`}<//>
    <${Dialog} title=${issued ? `Enrol gateway ${issued.gateway.gateway}` : `Add a gateway to ${store.name}`}
      open=${adding} onClose=${() => { setAdding(false); setIssued(null); registered.reload(); }}>
      ${adding && (issued
        ? html`<${IssuedCode} issued=${issued} />
          <div class="actions"><button type="button" onClick=${() => { setAdding(false); setIssued(null); registered.reload(); }}>
            Done</button></div>`
        : html`<${AddGatewayForm} store=${store} onIssued=${setIssued}
          onCancel=${() => setAdding(false)} />`)}
    <//>
    <${Dialog} title=${`Configuration of gateway ${configuring ?? ""}`} open=${configuring !== null}
      onClose=${() => { setConfiguring(null); registered.reload(); }}>
      ${configuring && html`<${ReadOnlyNote} permission=${WRITE} />
        <${ConfigForm} store=${store.key} gateway=${configuring} writable=${writable}
          onSaved=${(saved) => { setMessage(saved.published_at
            ? `Configuration version ${saved.desired_version} of ${configuring} saved and sent.`
            : `Configuration of ${configuring}: ${saved.delivery}.`); setConfiguring(null); registered.reload(); }}
          onCancel=${() => { setConfiguring(null); registered.reload(); }} />`}
    <//>
  </div>`;
}

function mebibytes(value) {
  return value === null || value === undefined ? "—" : `${count(Math.round(value / 2 ** 20))} MiB`;
}

function celsius(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} °C`;
}

function cpu(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} %`;
}

const ALERT_KINDS = { critical: "error", warning: "warning" };

/** The gateway's alerts and its last day: frames per minute per source, CPU and temperature. */
function GatewayHealthHistory({ gateway }) {
  const state = useApi(gatewaysPath(gateway.store, `/${encodeURIComponent(gateway.gateway)}/health?hours=24`));
  return html`<${Loading} state=${state}>${(health) => {
    const points = health.points;
    const times = points.map((point) => point.sent_at);
    const sources = [...new Set(points.flatMap((point) => Object.keys(point.sources)))].sort();
    const deepest = Math.max(0, ...points.map((point) => point.queue_depth_max));
    return html`<section class="gateway-health" aria-label=${`Health of gateway ${gateway.gateway}`}>
      <h3>Health over the last day</h3>
      ${health.alerts.length === 0
        ? html`<p class="hint">No alert.</p>`
        : html`<ul class="gateway-alerts" aria-label="Alerts">${health.alerts.map((alert) => html`<li
            key=${alert.code} class=${`notice ${ALERT_KINDS[alert.severity]}`}>
            <strong>${alert.severity === "critical" ? "Critical" : "Warning"}:</strong>
            ${" "}${alert.message} <span class="hint">(${alert.code})</span></li>`)}</ul>`}
      ${points.length === 0
        ? html`<p class="hint">No heartbeat in the last day.</p>`
        : html`<p class="hint">One sample per ${count(health.slot_s / 60)} minutes, kept
            ${count(health.retention_days)} days. Deepest outbox in the day: ${count(deepest)} events.</p>
          <${TimeChart} title="Frames per minute, by source" times=${times}
            series=${sources.map((name) => ({ label: name, values: points.map((point) => point.sources[name]?.frames_per_min ?? null) }))} />
          <${TimeChart} title="Agent CPU and board temperature" times=${times}
            hint="CPU in percent of one core; temperature where the board reports it."
            series=${[
              { label: "CPU (%)", values: points.map((point) => point.cpu_percent), format: (value) => count(Math.round(value)) },
              { label: "Temperature (°C)", values: points.map((point) => point.temperature_c), format: celsius },
            ]} />`}
    </section>`;
  }}<//>`;
}

function GatewayDetail({ gateway, registered, now }) {
  const [, , row] = registration(gateway, registered);
  const rows = [
    ["State", html`<${GatewayState} gateway=${gateway} />`],
    ["Registration", html`<${Registration} gateway=${gateway} registered=${registered} />`],
    ["Last heartbeat", html`<${LastHeartbeat} gateway=${gateway} now=${now} />`],
    ["Software version", gateway.software_version || "—"],
    ["Uptime", gateway.uptime_s ? `${count(Math.round(gateway.uptime_s / 3600))} h` : "—"],
    ["Outbox (events waiting to be sent)", count(gateway.queue_depth)],
    ["Events published", count(gateway.published)],
    ["Events dropped", count(gateway.dropped)],
    ["Frames rejected", count(gateway.rejected_frames)],
    ["Devices tracked", count(gateway.devices_tracked)],
    ["Active key id", gateway.active_key_id ? html`<code>${gateway.active_key_id}</code>` : "—"],
    ["Cloud config in force", gateway.config_version ? `version ${gateway.config_version}` : "none (its own file)"],
    ["Config refused", gateway.config_refused_version
      ? `version ${gateway.config_refused_version}: ${gateway.config_refused_reason}` : "—"],
    ["Sources", html`<${Sources} sources=${gateway.sources} />`],
    ["Agent CPU", cpu(gateway.cpu_percent)],
    ["Agent memory", mebibytes(gateway.memory_bytes)],
    ["Board temperature", celsius(gateway.temperature_c)],
    ["Disk free for the outbox", mebibytes(gateway.disk_free_bytes)],
  ];
  return html`<dl class="gateway-detail">${rows.map(([label, value]) => html`
    <dt>${label}</dt><dd>${value}</dd>`)}</dl>
    <${GatewayHealthHistory} gateway=${gateway} />
    <h3>Configuration and enrolment</h3>
    ${registered && (row ? html`<p class="hint">Zones and RSSI thresholds are set with <strong>Configure</strong>
      in the store's enrolment table; it is revoked there too.</p>`
    : html`<p class="hint">This gateway was enrolled offline, with
      <code>vitrina-provision enrol-gateway</code>, and is not registered here: the console
      can neither configure nor revoke it. Its zones and thresholds are in its own config
      file; to revoke it, run <code>vitrina-provision revoke-gateway</code> on the broker's
      host.</p>`)}
    <${EnrolmentNote} />`;
}

function GatewayTable({ gateways, registered, caption, now, onShow }) {
  return html`<${Table} caption=${caption} rows=${gateways}
    rowKey=${(gateway) => gateway.gateway} empty="No gateway has reported for this store yet."
    columns=${[
      ["Gateway", (gateway) => html`<code>${gateway.gateway}</code>`],
      ["State", (gateway) => html`<${GatewayState} gateway=${gateway} />`],
      ["Registration", (gateway) => html`<${Registration} gateway=${gateway} registered=${registered} />`],
      ["Last heartbeat", (gateway) => html`<${LastHeartbeat} gateway=${gateway} now=${now} />`],
      ["Outbox", (gateway) => count(gateway.queue_depth)],
      ["Dropped / rejected", (gateway) => `${count(gateway.dropped)} / ${count(gateway.rejected_frames)}`],
      ["Sources", (gateway) => html`<${Sources} sources=${gateway.sources} />`],
      ["Version", (gateway) => gateway.software_version || "—"],
      ["Key id", (gateway) => (gateway.active_key_id ? html`<code>${gateway.active_key_id}</code>` : "—")],
      ["", (gateway) => html`<button type="button" class="secondary small" onClick=${() => onShow(gateway, registered)}
        aria-label=${`Details of gateway ${gateway.gateway}`}>Details</button>`],
    ]} />`;
}

/** A store's reporting gateways and its registered ones, from one read of the registry. */
function StoreGateways({ store, gateways, writable, now, onShow }) {
  const registered = useApi(gatewaysPath(store.key));
  return html`<div class="store-gateways">
    <h3>${store.name} <span class="hint">(${store.key})</span></h3>
    <${GatewayTable} gateways=${gateways} registered=${registered.data} now=${now}
      onShow=${onShow} caption=${`Gateways of ${store.name}`} />
    <${RegisteredGateways} store=${store} registered=${registered} writable=${writable} />
  </div>`;
}

function StoresPage() {
  const stores = useApi(tenantPath("/stores"));
  const live = useLiveStream(["gateways"]);
  const now = useNow(5000);
  const [editing, setEditing] = useState(null);
  const [showing, setShowing] = useState(null);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);
  const writable = can(WRITE);
  const gateways = Object.values(live.gateways)
    .sort((a, b) => `${a.store}/${a.gateway}`.localeCompare(`${b.store}/${b.gateway}`));

  async function remove(store) {
    setError(null);
    setMessage(null);
    try {
      await api("DELETE", tenantPath(`/stores/${encodeURIComponent(store.key)}`));
      setMessage(`Store ${store.key} deleted.`);
      stores.reload();
    } catch (failure) {
      setError(failure);
    }
  }

  const showingNow = showing && (live.gateways[`${showing.gateway.store}/${showing.gateway.gateway}`] || showing.gateway);
  const show = (gateway, registered) => setShowing({ gateway, registered });
  return html`<${Loading} state=${stores}>${(rows) => {
    const keys = new Set(rows.map((store) => store.key));
    const elsewhere = gateways.filter((gateway) => !keys.has(gateway.store));
    const ofStore = (key) => gateways.filter((gateway) => gateway.store === key);
    const online = (key) => ofStore(key).filter((gateway) => gateway.state === "online").length;
    return html`
      <${Section} title="Stores" actions=${writable && html`<button type="button"
          onClick=${() => setEditing({ isNew: true, store: { key: "", name: "", time_zone: "Europe/Madrid", quiet_hours: null } })}>
          New store</button>`}>
        <${ReadOnlyNote} permission=${WRITE} />
        ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
        <${ErrorNotice} error=${error} title="Store not deleted" />
        <${Table} caption="The tenant's stores" rows=${rows} rowKey=${(store) => store.key}
          empty="No store yet." columns=${[
            ["Key", (store) => html`<code>${store.key}</code>`],
            ["Name", (store) => store.name],
            ["Time zone", (store) => store.time_zone],
            ["Quiet hours", (store) => ownText(store.quiet_hours, "the shop's")],
            ["Geofences", (store) => (store.geofences.length
              ? html`<a href=${`/console/t/${encodeURIComponent(context.tenant)}/geofences`}>${count(store.geofences.length)}</a>`
              : "none")],
            ["Gateways online", (store) => `${online(store.key)} of ${ofStore(store.key).length}`],
            ["", (store) => writable && html`<div class="actions">
              <button type="button" class="secondary small" aria-label=${`Edit store ${store.key}`}
                onClick=${() => setEditing({ isNew: false, store })}>Edit</button>
              <${ConfirmButton} label="Delete" confirm=${`Delete store ${store.key}`}
                onConfirm=${() => remove(store)} />
            </div>`],
          ]} />
        <p class="hint">A store with geofences or with gateways not revoked cannot be deleted:
          delete its geofences or give them another store, and revoke its gateways, first. Its
          gateways' reports and the presence already stored stay.</p>
      <//>
      <${Section} title="Gateways">
        <${ConnectionBadge} status=${live.status} />
        <${EnrolmentNote} />
        ${rows.map((store) => html`<${StoreGateways} key=${store.key} store=${store}
          gateways=${ofStore(store.key)} writable=${writable} now=${now} onShow=${show} />`)}
        ${elsewhere.length > 0 && html`<div class="store-gateways">
          <h3>Stores not set up here</h3>
          <p class="hint">These gateways report a store key that has no store above: create
            the store with that key to name it and give it a time zone.</p>
          <${GatewayTable} gateways=${elsewhere} registered=${[]} now=${now} onShow=${show}
            caption="Gateways of stores not set up here" />
        </div>`}
      <//>
      <${Dialog} title=${editing?.isNew ? "New store" : `Edit store ${editing?.store.key ?? ""}`}
        open=${editing !== null} onClose=${() => setEditing(null)}>
        ${editing && html`<${StoreForm} initial=${editing.store} isNew=${editing.isNew}
          onCancel=${() => setEditing(null)}
          onSaved=${(saved) => { setEditing(null); setMessage(`Store ${saved.key} saved.`); stores.reload(); }} />`}
      <//>
      <${Dialog} title=${`Gateway ${showing?.gateway.gateway ?? ""} of ${showing?.gateway.store ?? ""}`}
        open=${showing !== null} onClose=${() => setShowing(null)}>
        ${showingNow && html`<${GatewayDetail} gateway=${showingNow} registered=${showing.registered} now=${now} />
          <div class="actions"><button type="button" class="secondary" onClick=${() => setShowing(null)}>Close</button></div>`}
      <//>`;
  }}<//>`;
}

mount(StoresPage);
