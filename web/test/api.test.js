/* The client against the real API: every call an app makes, and the refusals it meets. */
import test from "node:test";
import assert from "node:assert/strict";
import {
  VitrinaClient, VitrinaForbiddenError, VitrinaUnauthorizedError, VitrinaValidationError,
  VitrinaNotFoundError,
} from "../index.js";
import { NEEDS_API, runningApi } from "./support/running-api.js";

const api = runningApi();
const options = { skip: NEEDS_API };

function app() {
  assert.ok(api);
  return new VitrinaClient({ apiBase: api.api_base, tenant: api.tenant, appKey: api.app_key });
}

test("an anonymous installation registers its phone, then its user signs in and keeps it", options, async () => {
  assert.ok(api);
  const anonymous = app();
  const installation = await anonymous.createInstallation({ locale: "es-ES", time_zone: "Europe/Madrid" });
  assert.match(installation.id, /^cus_[0-9a-f]{32}$/);
  assert.equal(installation.anonymous, true);
  assert.equal(installation.time_zone, "Europe/Madrid");
  const fcm = await anonymous.registerFcmToken(installation.id, "fcm-installation-token-0001");
  assert.equal(fcm.kind, "fcm");
  const consent = await anonymous.recordConsent(installation.id, { channel: "push", granted: true, source: "app" });
  assert.equal(consent.customer_id, installation.id);

  const juan = anonymous.withCustomerToken(async () => api.customers.juan.token);
  const { customer, created } = await juan.signIn({ installation_id: installation.id });
  assert.equal(customer.id, api.customers.juan.id);
  assert.equal(created, false, "juan had an account already");
  assert.equal(customer.anonymous, false);
  const devices = await juan.listDevices(customer.id);
  assert.ok(devices.some((device) => device.id === fcm.id), "the installation's phone moved to juan");
  const state = await juan.getConsent(customer.id);
  assert.equal(state.current.push.granted, true);
  await assert.rejects(anonymous.getCustomer(installation.id), VitrinaNotFoundError, "the installation is gone");
});

test("a new customer is made at the first sign-in, and the second finds them", options, async () => {
  assert.ok(api);
  const lucia = app().withCustomerToken(api.customers.lucia.token);
  const first = await lucia.signIn({ locale: "es" });
  const again = await lucia.signIn();
  assert.equal(first.created, true);
  assert.equal(again.created, false);
  assert.equal(again.customer.id, first.customer.id);
  assert.equal(first.customer.external_id, "lucia-3");
  assert.deepEqual(await lucia.getCustomer(first.customer.id), again.customer);
});

test("a signed-in customer registers every kind of device and records consent", options, async () => {
  assert.ok(api);
  const ana = app().withCustomerToken(api.customers.ana.token);
  const id = api.customers.ana.id;
  const web = await ana.registerWebPush(id, {
    endpoint: "https://push.example.net/send/ana-0001",
    keys: { p256dh: "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U", auth: "tBHItJI5svbpez7KI4CCXg" },
  });
  assert.deepEqual([web.kind, web.active, web.customer_id], ["web_push", true, id]);
  const fcm = await ana.registerFcmToken(id, "fcm-ana-token-0000000001");
  assert.equal(fcm.kind, "fcm");
  const beacon = await ana.registerAppBeacon(id, "a1b2c3d4");
  assert.equal(beacon.kind, "app_beacon");
  assert.ok(beacon.pseudonym_key_ids.length > 0, "linked under the tenant's pseudonym key");
  // apps register the beacon and the token again at every start: the same devices
  assert.equal((await ana.registerAppBeacon(id, "a1b2c3d4")).id, beacon.id);
  assert.equal((await ana.registerFcmToken(id, "fcm-ana-token-0000000001")).id, fcm.id);
  const kinds = (await ana.listDevices(id)).map((device) => device.kind).sort();
  assert.deepEqual(kinds, ["app_beacon", "fcm", "web_push"]);

  const given = new Date(Date.now() - 60_000);
  const answer = await ana.recordConsent(id, { channel: "web_push", granted: true, source: "web", given_at: given });
  assert.equal(Date.parse(answer.given_at), given.getTime());
  await ana.recordConsent(id, { channel: "email", granted: false, source: "web" });
  const state = await ana.getConsent(id);
  assert.equal(state.current.web_push.granted, true);
  assert.equal(state.current.email.granted, false);
  assert.deepEqual(state.ledger.slice(-2).map((entry) => [entry.channel, entry.granted]),
    [["web_push", true], ["email", false]], "the ledger keeps every answer, in order");
  assert.ok(typeof (await ana.webPushPublicKey()) === "string");
  assert.deepEqual(await ana.listCoupons(id), []);
});

test("locations are refused until the customer says yes, then enter the store's geofence", options, async () => {
  assert.ok(api);
  const juan = app().withCustomerToken(api.customers.juan.token);
  const id = api.customers.juan.id;
  const fix = { lat: api.geofence.lat, lon: api.geofence.lon, accuracy_m: 10, at: new Date() };
  const refused = await juan.reportLocation(id, fix).catch((error) => error);
  assert.ok(refused instanceof VitrinaForbiddenError, String(refused));
  assert.equal(refused.reason, "location_consent_missing");

  await juan.recordConsent(id, { channel: "location_marketing", granted: true, source: "app" });
  const outcome = await juan.reportLocation(id, [fix]);
  assert.equal(outcome.customer_id, id);
  assert.deepEqual(outcome.transitions.map((t) => [t.geofence, t.kind]), [[api.geofence.geofence, "enter"]]);
  assert.deepEqual(outcome.inside.map((stay) => stay.store), [api.geofence.store]);
});

test("opens are reported by message id when signed in, and by the open link otherwise", options, async () => {
  assert.ok(api);
  const juan = app().withCustomerToken(api.customers.juan.token);
  const opened = await juan.reportOpened(api.customers.juan.message_id);
  assert.equal(opened.message_id, api.customers.juan.message_id);
  assert.ok(opened.opened_at);
  const again = await juan.reportOpened(api.customers.juan.message_id, { opened_at: new Date() });
  assert.equal(again.opened_at, opened.opened_at, "the first open counts");

  await app().reportOpenUrl(api.customers.ana.open_url, { tag: api.customers.ana.tag });
  const wrongTag = await app().reportOpenUrl(api.customers.ana.open_url, { tag: "not-the-tag" }).catch((e) => e);
  assert.ok(wrongTag instanceof VitrinaNotFoundError);
  await assert.rejects(juan.reportOpened(api.customers.ana.message_id), VitrinaNotFoundError,
    "another customer's message is not found, as if it did not exist");
});

test("another customer's id with this customer's token is refused, and says why", options, async () => {
  assert.ok(api);
  const juan = app().withCustomerToken(api.customers.juan.token);
  const error = await juan.getConsent(api.customers.ana.id).catch((e) => e);
  assert.ok(error instanceof VitrinaForbiddenError, String(error));
  assert.equal(error.status, 403);
  assert.equal(error.body.detail, "the customer token is for another customer");
  await assert.rejects(juan.registerFcmToken(api.customers.ana.id, "fcm-stolen-token-00000001"), VitrinaForbiddenError);
});

test("a signed-in customer needs their token; a bad request says which field", options, async () => {
  assert.ok(api);
  const anonymous = app();
  const missing = await anonymous.getCustomer(api.customers.juan.id).catch((e) => e);
  assert.ok(missing instanceof VitrinaUnauthorizedError, String(missing));
  assert.match(String(missing.body.detail), /X-Customer-Token/);

  const forged = anonymous.withCustomerToken("not-a-jwt");
  const refused = await forged.getCustomer(api.customers.juan.id).catch((e) => e);
  assert.ok(refused instanceof VitrinaUnauthorizedError);
  assert.equal(refused.body.detail, "the customer token is not a JWT");

  const stale = anonymous.withCustomerToken(({ refresh }) => (refresh ? api.customers.juan.token : "not-a-jwt"));
  assert.equal((await stale.getCustomer(api.customers.juan.id)).external_id, "juan-42",
    "a refused token is replaced once, and the call goes through");

  const juan = anonymous.withCustomerToken(api.customers.juan.token);
  const invalid = await juan.recordConsent(api.customers.juan.id, { channel: "pigeon", granted: true, source: "app" })
    .catch((e) => e);
  assert.ok(invalid instanceof VitrinaValidationError, String(invalid));
  assert.deepEqual(invalid.problems.map((problem) => problem.loc), [["body", "channel"]]);
  assert.match(invalid.problems[0].msg, /unknown consent 'pigeon'/);
});
