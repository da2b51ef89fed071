/* Subscribe this browser to a shop's web pushes and register it with the Vitrina API.
 *
 *   import { enableWebPush } from "./vitrina-push.js";
 *   button.onclick = () => enableWebPush({ apiBase, tenant, customerId, applicationServerKey });
 *
 * Call it from a user gesture: browsers only ask for notification permission then. */

/** The VAPID public key (base64url) as the Uint8Array PushManager.subscribe wants. */
export function urlBase64ToUint8Array(base64url) {
  const padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(padded);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

/** The device registration body the API expects for a PushSubscription.toJSON(). */
export function registrationBody(subscriptionJson) {
  const keys = subscriptionJson.keys || {};
  if (!subscriptionJson.endpoint || !keys.p256dh || !keys.auth) {
    throw new Error("push subscription lacks endpoint or keys");
  }
  return { kind: "web_push", endpoint: subscriptionJson.endpoint, keys: { p256dh: keys.p256dh, auth: keys.auth } };
}

export function devicesUrl(apiBase, tenant, customerId) {
  const base = apiBase.replace(/\/+$/, "");
  return `${base}/v1/tenants/${encodeURIComponent(tenant)}/customers/${encodeURIComponent(customerId)}/devices`;
}

export async function enableWebPush({
  apiBase,
  tenant,
  customerId,
  applicationServerKey,
  serviceWorkerUrl = "/sw.js",
  fetchImpl = fetch,
}) {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    throw new Error("this browser does not support web push");
  }
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw new Error(`notification permission ${permission}`);
  const registration = await navigator.serviceWorker.register(serviceWorkerUrl);
  await navigator.serviceWorker.ready;
  const key = urlBase64ToUint8Array(applicationServerKey);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    // The shop's VAPID key changed: the old subscription can no longer be pushed to.
    await subscription.unsubscribe();
    subscription = null;
  }
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  }
  const response = await fetchImpl(devicesUrl(apiBase, tenant, customerId), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(registrationBody(subscription.toJSON())),
  });
  if (!response.ok) throw new Error(`device registration failed: HTTP ${response.status}`);
  return response.json();
}

function sameKey(current, wanted) {
  if (!current) return false;
  const a = new Uint8Array(current);
  return a.length === wanted.length && a.every((byte, i) => byte === wanted[i]);
}
