/* Subscribe this browser to the shop's web pushes and register it with the Vitrina API.
 *
 *   import { VitrinaClient } from "vitrina-web";
 *   import { enableWebPush } from "vitrina-web/push";
 *   button.onclick = () => enableWebPush(vitrina, customerId);
 *
 * Call it from a user gesture: browsers only ask for notification permission then. The
 * service worker (worker/sw.js with worker/notification.js beside it) must be served by
 * the shop's own origin; its scope decides which pages it serves. */

/** @typedef {import("./client.js").VitrinaClient} VitrinaClient */
/** @typedef {import("./models.js").Device} Device */

/**
 * @typedef {object} WebPushOptions
 * @property {string} [applicationServerKey] the tenant's VAPID key; fetched from the API
 *   when not given (it is made once and kept: subscriptions are bound to it)
 * @property {string} [serviceWorkerUrl] where the shop serves sw.js (default "/sw.js")
 */

/**
 * @typedef {object} WebPushEnabled
 * @property {Device} device what the API registered
 * @property {PushSubscription} subscription the browser's subscription
 */

/** The VAPID public key (base64url) as the Uint8Array PushManager.subscribe wants.
 * @param {string} base64url
 * @returns {Uint8Array<ArrayBuffer>} */
export function urlBase64ToUint8Array(base64url) {
  const padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(padded);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** Whether this browser can receive web pushes at all (iOS Safari only from a web app
 * added to the home screen). */
export function webPushSupported() {
  return typeof navigator !== "undefined" && "serviceWorker" in navigator
    && typeof window !== "undefined" && "PushManager" in window && typeof Notification !== "undefined";
}

/**
 * Ask for permission, subscribe with the tenant's VAPID key and register the
 * subscription for `customerId`. A subscription made under an older key is replaced:
 * it could no longer be pushed to.
 * @param {VitrinaClient} client
 * @param {string} customerId the signed-in customer's id, or the installation's
 * @param {WebPushOptions} [options]
 * @returns {Promise<WebPushEnabled>}
 */
export async function enableWebPush(client, customerId, options = {}) {
  if (!webPushSupported()) throw new Error("this browser does not support web push");
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw new Error(`notification permission ${permission}`);
  const registration = await navigator.serviceWorker.register(options.serviceWorkerUrl ?? "/sw.js");
  await navigator.serviceWorker.ready;
  const key = urlBase64ToUint8Array(options.applicationServerKey ?? (await client.webPushPublicKey()));
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  const device = await client.registerWebPush(customerId, subscription);
  return { device, subscription };
}

/**
 * @param {ArrayBuffer | null} current
 * @param {Uint8Array<ArrayBuffer>} wanted
 */
function sameKey(current, wanted) {
  if (!current) return false;
  const a = new Uint8Array(current);
  return a.length === wanted.length && a.every((byte, i) => byte === wanted[i]);
}
