/* Vitrina web push service worker: show pushes, report opens, follow the link. */
/* global VitrinaNotification, clients */
"use strict";

importScripts("notification.js");

self.addEventListener("push", (event) => {
  const doc = VitrinaNotification.parsePayload(event.data ? event.data.text() : "");
  if (!doc) return;
  const [title, options] = VitrinaNotification.notificationFor(doc);
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  const data = event.notification.data || {};
  event.notification.close();
  const openUrl = VitrinaNotification.safeOpenUrl(data.openUrl, self.location.origin);
  const report = openUrl
    ? fetch(openUrl, VitrinaNotification.openReport(data.tag, new Date()))
        .catch(() => undefined) // an unreachable tracker must not block the click
    : Promise.resolve();
  const target = new URL(data.url || "/", self.location.origin).href;
  const focus = clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    const open = windows.find((w) => w.url === target);
    return open ? open.focus() : clients.openWindow(target);
  });
  event.waitUntil(Promise.all([report, focus]));
});
