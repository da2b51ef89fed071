import test from "node:test";
import assert from "node:assert/strict";
import { enableWebPush, urlBase64ToUint8Array, webPushSupported } from "../vitrina-push.js";
import { webPushRegistration } from "../client.js";

test("VAPID key decodes to the 65-byte uncompressed point", () => {
  const key = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U";
  const bytes = urlBase64ToUint8Array(key);
  assert.equal(bytes.length, 65);
  assert.equal(bytes[0], 4);
});

test("registration body is what the devices endpoint accepts, nothing more", () => {
  const body = webPushRegistration({
    endpoint: "https://push.example/x", keys: { p256dh: "p", auth: "a" },
  });
  assert.deepEqual(body, { kind: "web_push", endpoint: "https://push.example/x", keys: { p256dh: "p", auth: "a" } });
  assert.throws(() => webPushRegistration({ endpoint: "https://push.example/x", keys: {} }), /lacks/);
});

test("outside a browser web push is not supported, and says so before asking anything", () => {
  assert.equal(webPushSupported(), false);
});

/** A browser that grants permission, with a push manager holding `existing` (or none). */
function browser(existing) {
  const calls = { subscribe: [], unsubscribed: 0, registered: [] };
  const registration = {
    pushManager: {
      getSubscription: async () => existing,
      subscribe: async (options) => {
        calls.subscribe.push(options);
        return { toJSON: () => ({ endpoint: "https://push.example/new", keys: { p256dh: "p", auth: "a" } }) };
      },
    },
  };
  const globals = {
    navigator: { serviceWorker: { register: async (url) => { calls.registered.push(url); return registration; }, ready: Promise.resolve(registration) } },
    window: { PushManager: class {} },
    Notification: { requestPermission: async () => "granted" },
  };
  for (const [name, value] of Object.entries(globals)) {
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  return calls;
}

/** The client's part, recorded: the key it hands out and the subscriptions registered. */
function client(key) {
  const registered = [];
  return {
    registered,
    webPushPublicKey: async () => key,
    registerWebPush: async (customerId, subscription) => {
      registered.push([customerId, subscription.toJSON()]);
      return { id: 1, kind: "web_push" };
    },
  };
}

const KEY = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U";

test("a subscription under an older VAPID key is replaced, one under the current key kept", async (t) => {
  t.after(() => { for (const name of ["navigator", "window", "Notification"]) delete globalThis[name]; });
  let unsubscribed = 0;
  const stale = {
    options: { applicationServerKey: new Uint8Array(65).fill(7).buffer },
    unsubscribe: async () => { unsubscribed += 1; return true; },
    toJSON: () => ({ endpoint: "https://push.example/old", keys: { p256dh: "p", auth: "a" } }),
  };
  const calls = browser(stale);
  const app = client(KEY);
  const { device } = await enableWebPush(/** @type {any} */ (app), "cus_1", { serviceWorkerUrl: "/push/sw.js" });
  assert.equal(device.kind, "web_push");
  assert.equal(unsubscribed, 1);
  assert.equal(calls.subscribe.length, 1);
  assert.deepEqual([...calls.subscribe[0].applicationServerKey], [...urlBase64ToUint8Array(KEY)]);
  assert.deepEqual(calls.registered, ["/push/sw.js"]);
  assert.deepEqual(app.registered, [["cus_1", { endpoint: "https://push.example/new", keys: { p256dh: "p", auth: "a" } }]]);

  const current = { ...stale, options: { applicationServerKey: urlBase64ToUint8Array(KEY).buffer } };
  const again = browser(current);
  const same = client(KEY);
  await enableWebPush(/** @type {any} */ (same), "cus_1");
  assert.equal(again.subscribe.length, 0, "kept");
  assert.equal(same.registered[0][1].endpoint, "https://push.example/old", "registered again: it is idempotent");
});

test("a refused permission is an error, and nothing is subscribed", async (t) => {
  t.after(() => { for (const name of ["navigator", "window", "Notification"]) delete globalThis[name]; });
  const calls = browser(null);
  globalThis.Notification = { requestPermission: async () => "denied" };
  await assert.rejects(enableWebPush(/** @type {any} */ (client(KEY)), "cus_1"), /notification permission denied/);
  assert.deepEqual(calls.registered, []);
});
