import test from "node:test";
import assert from "node:assert/strict";
import { urlBase64ToUint8Array, registrationBody, devicesUrl, publicKeyUrl, apiHeaders } from "../vitrina-push.js";

test("VAPID key decodes to the 65-byte uncompressed point", () => {
  const key = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U";
  const bytes = urlBase64ToUint8Array(key);
  assert.equal(bytes.length, 65);
  assert.equal(bytes[0], 4);
});

test("registration body is what the devices endpoint accepts, nothing more", () => {
  const body = registrationBody({
    endpoint: "https://push.example/x", expirationTime: null, keys: { p256dh: "p", auth: "a" },
  });
  assert.deepEqual(body, { kind: "web_push", endpoint: "https://push.example/x", keys: { p256dh: "p", auth: "a" } });
  assert.throws(() => registrationBody({ endpoint: "https://push.example/x", keys: {} }), /lacks/);
});

test("devices URL escapes tenant and customer", () => {
  assert.equal(devicesUrl("https://api.example/", "shop a", "cus_0f"), "https://api.example/tenants/shop%20a/customers/cus_0f/devices");
  assert.equal(publicKeyUrl("https://api.example", "shop a"), "https://api.example/tenants/shop%20a/web-push/public-key");
});

test("the app key goes in a bearer header, and only when given", () => {
  assert.deepEqual(apiHeaders("vk_abc_def"), { "Content-Type": "application/json", Authorization: "Bearer vk_abc_def" });
  assert.deepEqual(apiHeaders(undefined), { "Content-Type": "application/json" });
  assert.deepEqual(apiHeaders("vk_abc_def", "eyJ.a.b"), { "Content-Type": "application/json", Authorization: "Bearer vk_abc_def", "X-Customer-Token": "eyJ.a.b" });
});
