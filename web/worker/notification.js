/* Turns a Vitrina web push payload into what the service worker shows.
 *
 * Loaded by sw.js with importScripts (classic workers run in every browser that does
 * Web Push) and by the tests in Node; it touches no browser API itself. */
(function (root) {
  "use strict";

  /** Parse the decrypted push payload; a push without a usable payload shows nothing. */
  function parsePayload(text) {
    if (!text) return null;
    let doc;
    try {
      doc = JSON.parse(text);
    } catch (_err) {
      return null;
    }
    if (!doc || typeof doc.title !== "string" || typeof doc.body !== "string") return null;
    return doc;
  }

  /** [title, options] for registration.showNotification. */
  function notificationFor(doc) {
    const options = {
      body: doc.body,
      // The tag is the message's dedupe key: a resent message replaces, not duplicates.
      tag: doc.tag,
      renotify: false,
      data: { url: doc.url || "/", openUrl: doc.open_url || null, tag: doc.tag, extra: doc.data || {} },
    };
    if (doc.icon) options.icon = doc.icon;
    if (doc.image) options.image = doc.image;
    return [doc.title, options];
  }

  /** Only report opens to https endpoints or to this site's own origin. */
  function safeOpenUrl(openUrl, origin) {
    if (!openUrl) return null;
    try {
      const url = new URL(openUrl, origin);
      return url.protocol === "https:" || url.origin === origin ? url.href : null;
    } catch (_err) {
      return null;
    }
  }

  /** The fetch() options of an open report to the message's open_url (POST /o/<token>).
   *
   * The tracker is on another origin than the shop, so the report is a CORS "simple"
   * request (text/plain, no-cors): no preflight, nothing to read back, and the API reads
   * the body as JSON whatever its type. The token in the URL is the credential. */
  function openReport(tag, openedAt) {
    return {
      method: "POST",
      mode: "no-cors",
      keepalive: true,
      credentials: "omit",
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
      body: JSON.stringify({ tag: tag || null, opened_at: openedAt.toISOString() }),
    };
  }

  const api = { parsePayload, notificationFor, safeOpenUrl, openReport };
  if (typeof module === "object" && module.exports) module.exports = api;
  else root.VitrinaNotification = api;
})(typeof self !== "undefined" ? self : globalThis);
