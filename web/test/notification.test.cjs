"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { parsePayload, notificationFor, safeOpenUrl, openReport } = require("../worker/notification.js");

test("payload becomes a tagged notification with its link", () => {
  const doc = parsePayload(JSON.stringify({
    title: "50% off", body: "the dryer", tag: "abc", url: "https://shop.example/d",
    icon: "https://shop.example/i.png", open_url: "https://api.shop.example/o/1", data: { offer: "d50" },
  }));
  const [title, options] = notificationFor(doc);
  assert.equal(title, "50% off");
  assert.equal(options.body, "the dryer");
  assert.equal(options.tag, "abc");
  assert.equal(options.icon, "https://shop.example/i.png");
  assert.equal(options.image, undefined);
  assert.deepEqual(options.data, {
    url: "https://shop.example/d", openUrl: "https://api.shop.example/o/1", tag: "abc", extra: { offer: "d50" },
  });
});

test("unusable payloads show nothing", () => {
  for (const text of ["", "not json", "[]", JSON.stringify({ title: 1, body: "x" }), "null"]) {
    assert.equal(parsePayload(text), null, text);
  }
});

test("opens are reported only to https or to the site itself", () => {
  assert.equal(safeOpenUrl("https://api.example/o", "https://shop.example"), "https://api.example/o");
  assert.equal(safeOpenUrl("/o/1", "http://localhost:8000"), "http://localhost:8000/o/1");
  assert.equal(safeOpenUrl("http://tracker.example/o", "https://shop.example"), null);
  assert.equal(safeOpenUrl("javascript:alert(1)", "https://shop.example"), null);
  assert.equal(safeOpenUrl(null, "https://shop.example"), null);
});

test("an open report is a CORS-simple POST the tracker reads as JSON", () => {
  const options = openReport("abc", new Date("2026-11-24T10:09:00Z"));
  assert.equal(options.method, "POST");
  assert.equal(options.mode, "no-cors");
  assert.equal(options.credentials, "omit");
  assert.deepEqual(options.headers, { "Content-Type": "text/plain;charset=UTF-8" });
  assert.deepEqual(JSON.parse(options.body), { tag: "abc", opened_at: "2026-11-24T10:09:00.000Z" });
});
