/* What the web snippets of docs/app-guide.md find around them when they run under Node:
 * the names the guide says a page provides (API_BASE, TENANT, APP_KEY,
 * fetchCustomerToken, the push's `payload`) and the browser APIs they touch (localStorage,
 * navigator.language, geolocation, the service worker and its PushManager, Notification),
 * the latter as small stand-ins that behave as a browser that says yes does.
 *
 * The generated test (tests/cloud/api/test_web_app_client.py) calls `installPage` with the
 * running API, then runs the snippets in the guide's order in one scope, as a reader
 * pasting them into one page would. */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

/** @typedef {import("./running-api.js").RunningApi} RunningApi */

/** The subscription a push service would hand out: an https endpoint and the two keys. */
function subscriptionFor(/** @type {Uint8Array} */ applicationServerKey) {
  const json = {
    endpoint: `https://push.example.net/send/${randomBytes(12).toString("base64url")}`,
    expirationTime: null,
    keys: {
      // an uncompressed P-256 point's length, as a browser's key would have
      p256dh: Buffer.concat([Buffer.from([4]), randomBytes(64)]).toString("base64url"),
      auth: randomBytes(16).toString("base64url"),
    },
  };
  return {
    ...json,
    options: { applicationServerKey: applicationServerKey.buffer, userVisibleOnly: true },
    toJSON: () => json,
    unsubscribe: async () => true,
  };
}

/** A service worker container whose push manager subscribes once and remembers it. */
function serviceWorkers(/** @type {string[]} */ registered) {
  /** @type {ReturnType<typeof subscriptionFor> | null} */
  let subscription = null;
  const registration = {
    pushManager: {
      getSubscription: async () => subscription,
      subscribe: async (/** @type {{ applicationServerKey: Uint8Array }} */ options) => {
        assert.equal(options.applicationServerKey.length, 65, "a VAPID key is a P-256 point");
        subscription = subscriptionFor(options.applicationServerKey);
        return subscription;
      },
    },
  };
  return {
    register: async (/** @type {string} */ url) => {
      registered.push(url);
      return registration;
    },
    ready: Promise.resolve(registration),
  };
}

/**
 * Put the page's names and the browser's APIs on globalThis for the snippets; what the
 * snippets did through the stand-ins is recorded in the returned object.
 * @param {RunningApi} api
 * @param {string} customer whose token fetchCustomerToken hands out
 */
export function installPage(api, customer) {
  const prepared = api.customers[customer];
  const seen = { serviceWorkers: /** @type {string[]} */ ([]), tokenRequests: 0 };
  /** @type {Map<string, string>} */
  const storage = new Map();
  const globals = {
    API_BASE: api.api_base,
    TENANT: api.tenant,
    APP_KEY: api.app_key,
    fetchCustomerToken: async () => {
      seen.tokenRequests += 1;
      return prepared.token;
    },
    payload: { data: { message_id: String(prepared.message_id), open_url: prepared.open_url } },
    localStorage: {
      getItem: (/** @type {string} */ key) => storage.get(key) ?? null,
      setItem: (/** @type {string} */ key, /** @type {string} */ value) => storage.set(key, String(value)),
      removeItem: (/** @type {string} */ key) => storage.delete(key),
    },
    window: { PushManager: function PushManager() {} },
    Notification: { requestPermission: async () => "granted" },
    navigator: {
      language: "es-ES",
      serviceWorker: serviceWorkers(seen.serviceWorkers),
      geolocation: {
        getCurrentPosition: (/** @type {(position: object) => void} */ found) => found({
          coords: { latitude: api.geofence.lat, longitude: api.geofence.lon, accuracy: 12 },
          timestamp: Date.now(),
        }),
      },
    },
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  return seen;
}
