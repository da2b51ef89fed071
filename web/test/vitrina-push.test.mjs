import test from "node:test";
import assert from "node:assert/strict";
import { urlBase64ToUint8Array, registrationBody, devicesUrl } from "../vitrina-push.js";

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
  assert.equal(devicesUrl("https://api.example/", "shop a", 7), "https://api.example/v1/tenants/shop%20a/customers/7/devices");
});
