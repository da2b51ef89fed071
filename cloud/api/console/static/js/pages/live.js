// Live presence: devices present now per store and zone, and the newest enter, dwell
// and exit events, updated as they are stored (the stream of GET /presence/live).
import { Notice, Section, Table, count, html, mount, useEffect, useRef, useState } from "console/lib.js";
import { ConnectionBadge, useLiveStream, useNow } from "console/live-stream.js";

/** Events listed on the page (the newest). */
const LISTED_EVENTS = 50;
/** The spoken summary changes at most this often: a screen reader hears the trend,
 * not every device that walks in. */
const SUMMARY_EVERY_MS = 60_000;

const timeOfDay = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function plural(value, one, many) {
  return `${count(value)} ${value === 1 ? one : many}`;
}

function minutes(seconds) {
  return seconds < 60 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

function summaryOf(counts) {
  if (!counts) return "";
  const present = counts.stores.reduce((sum, store) => sum + store.devices_present, 0);
  const entered = counts.stores.reduce((sum, store) => sum + store.entered_last_hour, 0);
  return `${plural(present, "device", "devices")} present now in ${plural(counts.stores.length, "store", "stores")}; `
    + `${plural(entered, "device", "devices")} entered in the last hour.`;
}

/** `value`, but renewed at most every `everyMs` (the first one that is not empty, at
 * once). */
function useThrottled(value, everyMs) {
  const [shown, setShown] = useState(value);
  const last = useRef(0);
  useEffect(() => {
    const wait = value && !last.current ? 0 : last.current + everyMs - Date.now();
    if (wait <= 0) {
      if (value) last.current = Date.now();
      setShown(value);
      return undefined;
    }
    const timer = setTimeout(() => { last.current = Date.now(); setShown(value); }, wait);
    return () => clearTimeout(timer);
  }, [value, everyMs]);
  return shown;
}

function Kpi({ label, value, hint }) {
  return html`<div class="kpi" role="group" aria-label=${label}>
    <div class="value">${value}</div><div class="label">${label}</div>
    ${hint && html`<div class="hint">${hint}</div>`}
  </div>`;
}

function ZoneBar({ value, largest }) {
  const width = largest > 0 ? Math.round((value / largest) * 100) : 0;
  return html`<div class="live-bar">
    <span class="live-bar-fill" style=${`width: ${width}%`}></span>
    <span class="live-bar-value">${count(value)}</span>
  </div>`;
}

function StorePanel({ store, gateways }) {
  const mine = gateways.filter((gateway) => gateway.store === store.store);
  const online = mine.filter((gateway) => gateway.state === "online").length;
  const largest = Math.max(0, ...store.zones.map((zone) => zone.devices_present));
  const title = store.name ? `${store.name} (${store.store})` : store.store;
  return html`<${Section} title=${title}>
    <div class="kpis">
      <${Kpi} label="Devices present" value=${count(store.devices_present)} />
      <${Kpi} label="Entered in the last hour" value=${count(store.entered_last_hour)} />
      <${Kpi} label="Gateways online" value=${mine.length ? `${online} of ${mine.length}` : "none"} />
    </div>
    <${Table} caption=${`Devices per zone in ${title}`} rowKey=${(zone) => zone.zone}
      rows=${store.zones} empty="No device seen in the last hour."
      columns=${[
        ["Zone", (zone) => zone.zone],
        ["Devices present", (zone) => html`<${ZoneBar} value=${zone.devices_present} largest=${largest} />`],
        ["Entered in the last hour", (zone) => count(zone.entered_last_hour)],
      ]} />
  <//>`;
}

const TRANSITIONS = { enter: ["entered", "ok"], dwell: ["still there", "idle"], exit: ["left", "bad"] };

function EventList({ events, names }) {
  const listed = events.slice(0, LISTED_EVENTS);
  if (listed.length === 0) return html`<p class="empty">No event in the last hour yet.</p>`;
  return html`<ol class="live-events" tabindex="0" aria-label="Newest presence events, newest first">
    ${listed.map((event) => {
      const [verb, kind] = TRANSITIONS[event.transition] || [event.transition, "idle"];
      const store = names[event.store] || event.store;
      return html`<li key=${event.id}>
        <time datetime=${event.last_seen} title=${fullTime.format(new Date(event.last_seen))}>
          ${timeOfDay.format(new Date(event.last_seen))}</time>
        <span class=${`status ${kind}`}>${verb}</span>
        <span>Device <code>${event.device}</code> ${event.transition === "exit" ? "left" : "in"}
          ${" "}<strong>${event.zone}</strong>, ${store}</span>
        <span class="hint">gateway ${event.gateway}${event.transition !== "enter" ? `, ${minutes(event.dwell_s)} in range` : ""}</span>
      </li>`;
    })}
  </ol>`;
}

function Page() {
  const live = useLiveStream(["counts", "events", "gateways"]);
  const now = useNow(10_000);
  const summary = useThrottled(summaryOf(live.counts), SUMMARY_EVERY_MS);
  const counts = live.counts;
  const gateways = Object.values(live.gateways);
  const names = Object.fromEntries((counts?.stores || []).map((store) => [store.store, store.name || store.store]));
  const stale = live.updatedAt && now - live.updatedAt.getTime() > 60_000;
  return html`
    <div class="live-head">
      <${ConnectionBadge} status=${live.status} />
      ${live.updatedAt && html`<p class="hint">Last update ${timeOfDay.format(live.updatedAt)}${stale ? " (nothing new since)" : ""}</p>`}
    </div>
    <p class="visually-hidden" aria-live="polite">${summary}</p>
    <p class="hint">A device is present when its latest report in the store is an enter or a
      dwell from the last ${counts ? minutes(counts.present_timeout_s) : "minutes"}, and it has not left.
      These are phones and other devices, not people: one person may carry two.</p>
    ${live.status !== "live" && live.counts && html`<${Notice} kind="warning">
      <p>The figures below are from ${timeOfDay.format(live.updatedAt)} and will update when the connection is back.</p><//>`}
    ${!counts && html`<p class="loading">Loading…</p>`}
    ${counts && counts.stores.length === 0 && html`<${Notice}><p>No store is set up and no
      gateway has reported yet.</p><//>`}
    <div class="grid">${(counts?.stores || []).map((store) => html`
      <${StorePanel} key=${store.store} store=${store} gateways=${gateways} />`)}</div>
    <${Section} title="Recent events">
      <${EventList} events=${live.events} names=${names} />
    <//>`;
}

mount(Page);
