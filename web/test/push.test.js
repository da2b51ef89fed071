import test from "node:test";
import assert from "node:assert/strict";
import { urlBase64ToUint8Array, webPushSupported } from "../vitrina-push.js";
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
