// Stores (PUT/DELETE /stores/{key}) and the health of each store's gateways, live from
// the presence stream (its gateway messages: a gateway going offline shows within
// seconds, and every open page shares one database poll per tenant instead of each
// polling GET /gateways).
import {
  ConfirmButton, Dialog, ErrorNotice, Field, Loading, Notice, ReadOnlyNote, Section, Table,
  TextField, api, ago, can, context, count, html, mount, problemsAt, tenantPath, useApi, useState,
} from "console/lib.js";
import { ConnectionBadge, useLiveStream, useNow } from "console/live-stream.js";

const WRITE = "stores.write";
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

const STATES = {
  online: ["online", "ok"],
  silent: ["no heartbeat", "bad"],
  offline: ["offline", "bad"],
};

/** Every IANA zone the browser knows, and `current` even if it does not. */
function timeZones(current) {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const zones = new Set([...known, "UTC"]);
  if (current) zones.add(current);
  return [...zones].sort();
}

/** Zones grouped by their region ("Europe", "America"...), for a select's optgroups. */
function byRegion(zones) {
  const groups = new Map();
  for (const zone of zones) {
    const region = zone.includes("/") ? zone.split("/")[0] : "Other";
    if (!groups.has(region)) groups.set(region, []);
    groups.get(region).push(zone);
  }
  return [...groups.entries()];
}

function TimeZoneField({ value, onChange, error }) {
  const groups = byRegion(timeZones(value));
  return html`<${Field} label="Time zone" error=${error}
      hint="The zone of the store's opening hours (IANA, e.g. Europe/Madrid).">
    ${(control) => html`<select ...${control} value=${value}
        onChange=${(event) => onChange(event.currentTarget.value)}>
      ${groups.map(([region, zones]) => html`<optgroup label=${region}>
        ${zones.map((zone) => html`<option value=${zone} selected=${zone === value}>${zone.replaceAll("_", " ")}</option>`)}
      </optgroup>`)}
    </select>`}
  <//>`;
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
        { name: form.name, time_zone: form.time_zone });
      onSaved(saved);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const nameError = fieldError(error, "name");
  const zoneError = fieldError(error, "time_zone");
  return html`<form onSubmit=${save} class="stack" aria-label="Store">
    <${ErrorNotice} error=${nameError || zoneError ? null : error} title="Store not saved" />
    ${(nameError || zoneError) && html`<${Notice} kind="error"><p><strong>Store not saved:</strong>
      see the fields marked below.</p><//>`}
    <div class="row">
      <${TextField} label="Key" value=${form.key} onInput=${set("key")} required disabled=${!isNew}
        error=${keyError} hint="How gateways and the API name the store; it cannot change." />
      <${TextField} label="Name" value=${form.name} onInput=${set("name")} required maxlength="60"
        error=${nameError} />
    </div>
    <${TimeZoneField} value=${form.time_zone} onChange=${set("time_zone")} error=${zoneError} />
    <div class="actions">
      <button type="submit" disabled=${busy || keyError || !form.key}>${busy ? "Saving…" : "Save store"}</button>
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

function EnrolmentNote({ store = "STORE" }) {
  const command = `vitrina-provision enrol-gateway --broker-dir BROKER_DIR --tenant ${context.tenant} \\\n`
    + `  --store ${store} --gateway GATEWAY --key-id KEY_ID --key-file KEY_FILE --out bundle/`;
  return html`<div class="enrolment">
    <p class="hint">How a gateway is enrolled today: on the broker's host, run</p>
    <pre><code>${command}</code></pre>
    <p class="hint">and copy the bundle to <code>/etc/vitrina</code> on the gateway (the
      README tells the rest); <code>vitrina-provision revoke-gateway</code> takes its login
      away. A gateway appears here with its first heartbeat.</p>
  </div>`;
}

function GatewayDetail({ gateway, now }) {
  const rows = [
    ["State", html`<${GatewayState} gateway=${gateway} />`],
    ["Last heartbeat", html`<${LastHeartbeat} gateway=${gateway} now=${now} />`],
    ["Software version", gateway.software_version || "—"],
    ["Uptime", gateway.uptime_s ? `${count(Math.round(gateway.uptime_s / 3600))} h` : "—"],
    ["Outbox (events waiting to be sent)", count(gateway.queue_depth)],
    ["Events published", count(gateway.published)],
    ["Events dropped", count(gateway.dropped)],
    ["Frames rejected", count(gateway.rejected_frames)],
    ["Devices tracked", count(gateway.devices_tracked)],
    ["Active key id", gateway.active_key_id ? html`<code>${gateway.active_key_id}</code>` : "—"],
    ["Sources", html`<${Sources} sources=${gateway.sources} />`],
  ];
  return html`<dl class="gateway-detail">${rows.map(([label, value]) => html`
    <dt>${label}</dt><dd>${value}</dd>`)}</dl>
    <h3>Configuration and enrolment</h3>
    <p class="hint">Zones and RSSI thresholds are set in the gateway's own config file for
      now.</p>
    <${EnrolmentNote} store=${gateway.store} />`;
}

function GatewayTable({ gateways, caption, now, onShow }) {
  return html`<${Table} caption=${caption} rows=${gateways}
    rowKey=${(gateway) => gateway.gateway} empty="No gateway has reported for this store yet."
    columns=${[
      ["Gateway", (gateway) => html`<code>${gateway.gateway}</code>`],
      ["State", (gateway) => html`<${GatewayState} gateway=${gateway} />`],
      ["Last heartbeat", (gateway) => html`<${LastHeartbeat} gateway=${gateway} now=${now} />`],
      ["Outbox", (gateway) => count(gateway.queue_depth)],
      ["Dropped / rejected", (gateway) => `${count(gateway.dropped)} / ${count(gateway.rejected_frames)}`],
      ["Sources", (gateway) => html`<${Sources} sources=${gateway.sources} />`],
      ["Version", (gateway) => gateway.software_version || "—"],
      ["Key id", (gateway) => (gateway.active_key_id ? html`<code>${gateway.active_key_id}</code>` : "—")],
      ["", (gateway) => html`<button type="button" class="secondary small" onClick=${() => onShow(gateway)}
        aria-label=${`Details of gateway ${gateway.gateway}`}>Details</button>`],
    ]} />`;
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

  const showingNow = showing && (live.gateways[`${showing.store}/${showing.gateway}`] || showing);
  return html`<${Loading} state=${stores}>${(rows) => {
    const keys = new Set(rows.map((store) => store.key));
    const elsewhere = gateways.filter((gateway) => !keys.has(gateway.store));
    const ofStore = (key) => gateways.filter((gateway) => gateway.store === key);
    const online = (key) => ofStore(key).filter((gateway) => gateway.state === "online").length;
    return html`
      <${Section} title="Stores" actions=${writable && html`<button type="button"
          onClick=${() => setEditing({ isNew: true, store: { key: "", name: "", time_zone: "Europe/Madrid" } })}>
          New store</button>`}>
        <${ReadOnlyNote} permission=${WRITE} />
        ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
        <${ErrorNotice} error=${error} title="Store not deleted" />
        <${Table} caption="The tenant's stores" rows=${rows} rowKey=${(store) => store.key}
          empty="No store yet." columns=${[
            ["Key", (store) => html`<code>${store.key}</code>`],
            ["Name", (store) => store.name],
            ["Time zone", (store) => store.time_zone],
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
        <p class="hint">A store with geofences cannot be deleted: delete its geofences or give
          them another store first. Its gateways' reports and the presence already stored stay.</p>
      <//>
      <${Section} title="Gateways">
        <${ConnectionBadge} status=${live.status} />
        <${EnrolmentNote} />
        ${rows.map((store) => html`<div class="store-gateways" key=${store.key}>
          <h3>${store.name} <span class="hint">(${store.key})</span></h3>
          <${GatewayTable} gateways=${ofStore(store.key)} now=${now} onShow=${setShowing}
            caption=${`Gateways of ${store.name}`} />
        </div>`)}
        ${elsewhere.length > 0 && html`<div class="store-gateways">
          <h3>Stores not set up here</h3>
          <p class="hint">These gateways report a store key that has no store above: create
            the store with that key to name it and give it a time zone.</p>
          <${GatewayTable} gateways=${elsewhere} now=${now} onShow=${setShowing}
            caption="Gateways of stores not set up here" />
        </div>`}
      <//>
      <${Dialog} title=${editing?.isNew ? "New store" : `Edit store ${editing?.store.key ?? ""}`}
        open=${editing !== null} onClose=${() => setEditing(null)}>
        ${editing && html`<${StoreForm} initial=${editing.store} isNew=${editing.isNew}
          onCancel=${() => setEditing(null)}
          onSaved=${(saved) => { setEditing(null); setMessage(`Store ${saved.key} saved.`); stores.reload(); }} />`}
      <//>
      <${Dialog} title=${`Gateway ${showing?.gateway ?? ""} of ${showing?.store ?? ""}`}
        open=${showing !== null} onClose=${() => setShowing(null)}>
        ${showingNow && html`<${GatewayDetail} gateway=${showingNow} now=${now} />
          <div class="actions"><button type="button" class="secondary" onClick=${() => setShowing(null)}>Close</button></div>`}
      <//>`;
  }}<//>`;
}

mount(StoresPage);
