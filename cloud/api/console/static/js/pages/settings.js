// Shop settings: the shop's own quiet hours and time zone (GET/PUT /preferences), what
// applies with the deployment's settings, and each store's own quiet hours (set on the
// Stores page), with the order a message follows to pick them
// (cloud/preferences/precedence.py). Every member reads it; marketers and owners change
// it (preferences.write).
import {
  ErrorNotice, Loading, Notice, ReadOnlyNote, Section, Table, api, can, context, html, mount,
  tenantPath, useApi, useState, when,
} from "console/lib.js";
import {
  QuietHoursField, TimeZoneSelect, ownText, quietInvalid, quietProblems, windowText,
} from "console/quiet-hours.js";

const WRITE = "preferences.write";
const FROM = {
  tenant: "this shop's own",
  deployment_tenant: "the deployment's for this shop",
  deployment: "the deployment's",
};

function InForce({ preferences }) {
  const { applies } = preferences;
  const rows = [
    ["Quiet hours", `${windowText(applies.quiet_hours)}, ${FROM[applies.quiet_hours_from]}`],
    ["Clock of customers with no time zone", `${applies.time_zone}, ${FROM[applies.time_zone_from]}`],
    ["Saved", preferences.version
      ? `version ${preferences.version}, ${when(preferences.updated_at)}`
      : "never: the deployment's settings apply"],
  ];
  return html`<dl class="gateway-detail" aria-label="In force">${rows.map(([label, value]) => html`
    <dt>${label}</dt><dd>${value}</dd>`)}</dl>`;
}

function PreferencesForm({ preferences, writable, onSaved }) {
  const { deployment } = preferences;
  const [quiet, setQuiet] = useState(preferences.quiet_hours);
  const [zone, setZone] = useState(preferences.time_zone ?? "");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSaved(await api("PUT", tenantPath("/preferences"),
        { quiet_hours: quiet, time_zone: zone || null }));
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const problems = quietProblems(error, ["body", "quiet_hours"]);
  const zoneError = (error?.problems || []).filter((problem) => problem.loc?.[1] === "time_zone")
    .map((problem) => problem.msg).join("; ") || null;
  const located = problems.start || problems.end || problems.whole || zoneError;
  return html`<form onSubmit=${save} class="stack" aria-label="Quiet hours and time zone">
    <${ErrorNotice} error=${located ? null : error} title="Settings not saved" />
    ${located && html`<${Notice} kind="error"><p><strong>Settings not saved:</strong>${" "}see
      the fields marked below.</p><//>`}
    <${QuietHoursField} value=${quiet} onChange=${setQuiet} problems=${problems}
      disabled=${!writable}
      inherit=${`The deployment's: ${windowText(deployment.quiet_hours)}`}
      off="None: messages go out at any hour"
      hint="When marketing messages wait (held until the end, not dropped), on each customer's clock." />
    <${TimeZoneSelect} label="Time zone" value=${zone} onChange=${setZone} error=${zoneError}
      disabled=${!writable} inherit=${`The deployment's: ${deployment.time_zone}`}
      hint="The clock of customers who gave no time zone, outside a store's visits; birthdays too." />
    ${writable && html`<div class="actions">
      <button type="submit" disabled=${busy || quietInvalid(quiet)}>${busy ? "Saving…" : "Save shop settings"}</button>
    </div>`}
  </form>`;
}

function StoreRules() {
  const stores = useApi(tenantPath("/stores"));
  const storesPage = `/console/t/${encodeURIComponent(context.tenant)}/stores`;
  return html`<${Section} title="Stores">
    <p class="hint">A store's own quiet hours, and its time zone, apply to the messages its
      visits start (presence, geofences). They are set on the <a href=${storesPage}>Stores</a> page.</p>
    <${Loading} state=${stores}>${(rows) => html`<${Table} caption="Quiet hours of each store"
      rows=${rows} rowKey=${(store) => store.key} empty="No store yet."
      columns=${[
        ["Store", (store) => html`${store.name} <span class="hint">(${store.key})</span>`],
        ["Time zone", (store) => store.time_zone],
        ["Quiet hours", (store) => ownText(store.quiet_hours, "the shop's")],
      ]} />`}<//>
  <//>`;
}

function Precedence() {
  return html`<${Section} title="Which apply to a message">
    <p>Quiet hours: the first of</p>
    <ol>
      <li>the store's own, for a message a visit to that store started;</li>
      <li>this shop's own, above;</li>
      <li>the deployment's for this shop, then the deployment's for every shop.</li>
    </ol>
    <p>On the clock of the first of: the customer's own time zone; the store's, for a
      message a visit started; this shop's; the deployment's.</p>
  <//>`;
}

function SettingsPage() {
  const preferences = useApi(tenantPath("/preferences"));
  const [message, setMessage] = useState(null);
  const writable = can(WRITE);
  return html`
    <${Section} title="Quiet hours and time zone">
      <${ReadOnlyNote} permission=${WRITE} />
      ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
      <${Loading} state=${preferences}>${(found) => html`
        <${InForce} preferences=${found} />
        <${PreferencesForm} key=${found.version} preferences=${found} writable=${writable}
          onSaved=${(saved) => { setMessage(`Shop settings saved (version ${saved.version}).`); preferences.reload(); }} />`}<//>
    <//>
    <${StoreRules} />
    <${Precedence} />`;
}

mount(SettingsPage);
