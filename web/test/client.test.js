/* The client's requests and error mapping, against a recording fetch (no API needed). */
import test from "node:test";
import assert from "node:assert/strict";
import {
  VitrinaClient, VitrinaApiError, VitrinaNetworkError, VitrinaUnauthorizedError,
  VitrinaValidationError, VitrinaRateLimitError, VitrinaForbiddenError,
} from "../index.js";

/** A fetch that records each request and answers with the next of `answers`. */
function recording(...answers) {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push({ url, ...init, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    const next = answers.shift() ?? new Response("{}", { status: 200 });
    if (next instanceof Error) throw next;
    return next;
  };
  return { seen, fetch };
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

test("the app key goes in a bearer header; the customer token only when acting for one", async () => {
  const { seen, fetch } = recording(json(201, { id: "cus_1" }), json(200, { id: "cus_2" }));
  const app = new VitrinaClient({ apiBase: "https://api.example/", tenant: "shop a", appKey: "vk_a_b", fetch });
  await app.createInstallation({ locale: "es" });
  let calls = 0;
  const juan = app.withCustomerToken(() => `token-${++calls}`);
  const { customer, created } = await juan.signIn({ installation_id: "cus_1" });
  assert.deepEqual(customer, { id: "cus_2" });
  assert.equal(created, false);
  assert.equal(seen[0].url, "https://api.example/tenants/shop%20a/customers");
  assert.deepEqual(seen[0].headers, {
    Accept: "application/json", Authorization: "Bearer vk_a_b", "Content-Type": "application/json",
  });
  assert.deepEqual(seen[0].body, { locale: "es" });
  assert.equal(seen[1].headers["X-Customer-Token"], "token-1");
  assert.deepEqual(seen[1].body, { installation_id: "cus_1" });
  assert.equal(app.signedIn, false);
  assert.equal(juan.signedIn, true);
});

test("an installation is created without the token even by a signed-in client", async () => {
  const { seen, fetch } = recording(json(201, { id: "cus_1" }));
  const juan = new VitrinaClient({ apiBase: "https://api.example", tenant: "t", appKey: "k", customerToken: "tok", fetch });
  await juan.createInstallation();
  assert.equal(seen[0].headers["X-Customer-Token"], undefined);
});

test("signing in without a token is a mistake told before any request", async () => {
  const { seen, fetch } = recording();
  const app = new VitrinaClient({ apiBase: "https://api.example", tenant: "t", appKey: "k", fetch });
  await assert.rejects(app.signIn(), /withCustomerToken/);
  assert.equal(seen.length, 0);
});

test("refusals become typed errors carrying the API's body", async () => {
  const problems = [{ loc: ["body", "granted"], msg: "Field required", type: "missing" }];
  const { fetch } = recording(
    json(401, { detail: "the customer token has expired: ask the shop for a new one" }),
    json(422, { detail: problems, message: "body.granted: Field required" }),
    json(429, { detail: "too many failed API keys: try again in 12 s" }, { "Retry-After": "12" }),
    json(403, { detail: { reason: "location_consent_missing", msg: "the customer never answered" } }),
    new Response("<html>bad gateway</html>", { status: 502 }),
  );
  const juan = new VitrinaClient({ apiBase: "https://api.example", tenant: "t", appKey: "k", customerToken: "x", fetch });

  const expired = await juan.getCustomer("cus_1").catch((error) => error);
  assert.ok(expired instanceof VitrinaUnauthorizedError);
  assert.ok(expired instanceof VitrinaApiError);
  assert.equal(expired.status, 401);
  assert.match(expired.message, /GET https:\/\/api.example\/tenants\/t\/customers\/cus_1: HTTP 401: the customer token has expired/);

  const invalid = await juan.recordConsent("cus_1", { channel: "push", source: "app" }).catch((e) => e);
  assert.ok(invalid instanceof VitrinaValidationError);
  assert.deepEqual(invalid.problems, problems);
  assert.match(invalid.message, /body.granted: Field required/);

  const throttled = await juan.getConsent("cus_1").catch((e) => e);
  assert.ok(throttled instanceof VitrinaRateLimitError);
  assert.equal(throttled.retryAfter, 12);

  const refused = await juan.reportLocation("cus_1", { lat: 1, lon: 2, accuracy_m: 3 }).catch((e) => e);
  assert.ok(refused instanceof VitrinaForbiddenError);
  assert.equal(refused.reason, "location_consent_missing");
  assert.match(refused.message, /never answered/);

  const proxy = await juan.listDevices("cus_1").catch((e) => e);
  assert.equal(proxy.constructor, VitrinaApiError);
  assert.equal(proxy.status, 502);
  assert.deepEqual(proxy.body, { detail: "<html>bad gateway</html>" });
  assert.equal(proxy.reason, null);
  assert.deepEqual(proxy.problems, []);
});

test("a refused token is fetched anew once, and the request made again with it", async () => {
  const expired = json(401, { detail: "the customer token has expired: ask the shop for a new one" });
  const { seen, fetch } = recording(expired, json(201, { id: 7, kind: "fcm" }), expired,
    json(401, { detail: "the customer token's key (kid) was retired: sign with a current key" }));
  const asked = [];
  const juan = new VitrinaClient({
    apiBase: "https://api.example", tenant: "t", appKey: "k", fetch,
    customerToken: ({ refresh }) => { asked.push(refresh); return refresh ? "new" : "cached"; },
  });
  const device = await juan.registerFcmToken("cus_1", "fcm-token-0000000001");
  assert.deepEqual(device, { id: 7, kind: "fcm" });
  assert.deepEqual(asked, [false, true]);
  assert.deepEqual(seen.map((request) => request.headers["X-Customer-Token"]), ["cached", "new"]);
  assert.deepEqual(seen[1].body, { kind: "fcm", token: "fcm-token-0000000001" });

  const twice = await juan.getCustomer("cus_1").catch((e) => e);
  assert.ok(twice instanceof VitrinaUnauthorizedError, "one new token only: then the app signs in again");
  assert.match(twice.message, /retired/);
  assert.equal(seen.length, 4);
});

test("an unreachable API is a network error, not an API refusal", async () => {
  const { fetch } = recording(new TypeError("fetch failed"));
  const app = new VitrinaClient({ apiBase: "https://api.example", tenant: "t", appKey: "k", fetch });
  const error = await app.webPushPublicKey().catch((e) => e);
  assert.ok(error instanceof VitrinaNetworkError);
  assert.ok(!(error instanceof VitrinaApiError));
  assert.match(error.message, /could not be reached \(fetch failed\)/);
});

test("an open link is posted as a CORS-simple request without the app key", async () => {
  const { seen, fetch } = recording(new Response(null, { status: 204 }));
  const app = new VitrinaClient({ apiBase: "https://api.example", tenant: "t", appKey: "k", customerToken: "x", fetch });
  await app.reportOpenUrl("https://api.example/o/abc", { tag: "t1", opened_at: new Date("2026-11-24T10:09:00Z") });
  assert.equal(seen[0].url, "https://api.example/o/abc");
  assert.deepEqual(seen[0].headers, { "Content-Type": "text/plain;charset=UTF-8" });
  assert.deepEqual(seen[0].body, { tag: "t1", opened_at: "2026-11-24T10:09:00.000Z" });
});

test("a client needs its base, tenant and app key", async () => {
  assert.throws(() => new VitrinaClient({ apiBase: "https://api.example", tenant: "t" }), /appKey/);
  const app = new VitrinaClient({ apiBase: "https://api.example", tenant: "t", appKey: "k" });
  await assert.rejects(app.getCustomer(""), /customer id/);
});
