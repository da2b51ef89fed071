// The tenant's live presence stream (GET /tenants/{t}/presence/live, server-sent
// events) as page state: counts per store and zone, gateway health, the newest events,
// and how the connection is doing. Used by the live page and the stores page.
import { api, html, tenantPath, useEffect, useRef, useState } from "console/lib.js";

/** Events kept for the list: the page shows the newest, the rest is history. */
export const MAX_EVENTS = 100;
/** After the browser gives up on a stream (an error answer), try again this much later. */
const RETRY_AFTER_FAILURE_MS = 5000;

export function gatewayKey(gateway) {
  return `${gateway.store}/${gateway.gateway}`;
}

function merge(older, newer) {
  const seen = new Set(newer.map((event) => event.id));
  return [...newer, ...older.filter((event) => !seen.has(event.id))].slice(0, MAX_EVENTS);
}

/**
 * Follow the stream for `topics` ("counts", "events", "gateways").
 * Returns {status, counts, gateways, events, updatedAt}: status is "connecting",
 * "live", "reconnecting" (the browser is reconnecting by itself) or "failed" (it gave
 * up; the page tries again in a few seconds); gateways is an object by "store/gateway";
 * events are newest first.
 */
export function useLiveStream(topics) {
  const [state, setState] = useState({
    status: "connecting", counts: null, gateways: {}, events: [], updatedAt: null,
  });
  const topicKey = topics.join(",");
  const retry = useRef(null);

  useEffect(() => {
    let source = null;
    let stopped = false;
    const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join("&");
    const url = tenantPath(`/presence/live?${query}`);
    const update = (change) => setState((previous) => ({ ...previous, ...change(previous) }));
    const read = (message) => JSON.parse(message.data);

    function connect() {
      source = new EventSource(url);
      source.addEventListener("open", () => update(() => ({ status: "live" })));
      source.addEventListener("snapshot", (message) => {
        const snapshot = read(message);
        update((previous) => ({
          status: "live",
          updatedAt: new Date(),
          counts: snapshot.counts ?? previous.counts,
          gateways: snapshot.gateways
            ? Object.fromEntries(snapshot.gateways.map((gateway) => [gatewayKey(gateway), gateway]))
            : previous.gateways,
          events: snapshot.events
            ? (snapshot.resumed_after === null ? snapshot.events : merge(previous.events, snapshot.events))
            : previous.events,
        }));
      });
      source.addEventListener("presence", (message) => {
        const event = read(message);
        update((previous) => ({ events: merge(previous.events, [event]), updatedAt: new Date() }));
      });
      source.addEventListener("counts", (message) => {
        const counts = read(message);
        update(() => ({ counts, updatedAt: new Date() }));
      });
      source.addEventListener("gateway", (message) => {
        const gateway = read(message);
        update((previous) => ({
          gateways: { ...previous.gateways, [gatewayKey(gateway)]: gateway }, updatedAt: new Date(),
        }));
      });
      source.addEventListener("error", () => {
        if (stopped) return;
        if (source.readyState === EventSource.CONNECTING) {
          update(() => ({ status: "reconnecting" }));
          return;
        }
        // The browser gave up (an answer that is not a stream): the session may have
        // ended (a call through `api` then sends the member to sign in), or the server
        // refused for now; either way, try again shortly.
        source.close();
        update(() => ({ status: "failed" }));
        api("GET", tenantPath("/gateways")).catch(() => {});
        retry.current = setTimeout(() => { if (!stopped) connect(); }, RETRY_AFTER_FAILURE_MS);
      });
    }

    connect();
    return () => {
      stopped = true;
      clearTimeout(retry.current);
      source?.close();
    };
  }, [topicKey]);

  return state;
}

/** The current time, renewed every `everyMs`: for "12 s ago" that stays true. */
export function useNow(everyMs = 5000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** What the connection's state means, for a person. */
export function connectionText(status) {
  return {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Connection lost: reconnecting…",
    failed: "Disconnected: trying again in a few seconds…",
  }[status];
}

/** A badge with the connection's state, announced when it changes. */
export function ConnectionBadge({ status }) {
  const kind = status === "live" ? "ok" : status === "connecting" ? "idle" : "bad";
  return html`<p class="live-connection" role="status">
    <span class=${`status ${kind}`}>${connectionText(status)}</span>
  </p>`;
}
