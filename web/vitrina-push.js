/* Subscribe this browser to a shop's web pushes and register it with the Vitrina API.
 *
 *   import { enableWebPush } from "./vitrina-push.js";
 *   button.onclick = () => enableWebPush({ apiBase, tenant, customerId, apiKey, customerToken });
 *
 * `apiKey` is the tenant's app key (the API's device and key routes want one). The app
 * key is public, so registering a device for a signed-in customer also needs
 * `customerToken`: the short-lived token the shop's backend signed for them, sent as
 * X-Customer-Token (a shopper not signed in registers on an anonymous installation,
 * `customerId` being its id, without one);
 * `applicationServerKey` may be given, else it is fetched from the API (the tenant's
 * VAPID key, made once and kept: subscriptions are bound to it).
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

function tenantUrl(apiBase, tenant) {
  return `${apiBase.replace(/\/+$/, "")}/tenants/${encodeURIComponent(tenant)}`;
}

export function devicesUrl(apiBase, tenant, customerId) {
  return `${tenantUrl(apiBase, tenant)}/customers/${encodeURIComponent(customerId)}/devices`;
}

export function publicKeyUrl(apiBase, tenant) {
  return `${tenantUrl(apiBase, tenant)}/web-push/public-key`;
}

/** Request headers for the API: JSON, the app key and the customer token when given. */
export function apiHeaders(apiKey, customerToken) {
  const headers = { "Content-Type": "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (customerToken) headers["X-Customer-Token"] = customerToken;
  return headers;
}

export async function enableWebPush({
  apiBase,
  tenant,
  customerId,
  apiKey,
  customerToken,
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
  if (!applicationServerKey) {
    const answer = await fetchImpl(publicKeyUrl(apiBase, tenant), { headers: apiHeaders(apiKey) });
    if (!answer.ok) throw new Error(`VAPID key lookup failed: HTTP ${answer.status}`);
    applicationServerKey = (await answer.json()).application_server_key;
  }
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
    headers: apiHeaders(apiKey, customerToken),
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
