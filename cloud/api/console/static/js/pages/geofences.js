// Geofences: the tenant's circles and polygons on a map (Leaflet, drawn and edited with
// leaflet-geoman), a form beside it that holds the whole definition (store, shape by its
// coordinates, dwell threshold, operating hours), and where consenting app users' phones
// reported lately. The form is the source of truth: the map draws what it says and
// writes back what is drawn or dragged, so every change can also be typed. Saving is
// PUT /geofences/{id} with exactly the definition the API takes; deleting is DELETE.
import {
  ConfirmButton, ErrorNotice, Field, Loading, Notice, ReadOnlyNote, Section, SelectField,
  Table, TextField, CheckField, api, can, context, count, html, mount, tenantPath, useApi,
  useEffect, useId, useRef, useState, when,
} from "console/lib.js";

const WRITE = "stores.write";
const SEE_LOCATIONS = "locations.read";
const DAYS = [["mon", "Monday"], ["tue", "Tuesday"], ["wed", "Wednesday"], ["thu", "Thursday"],
  ["fri", "Friday"], ["sat", "Saturday"], ["sun", "Sunday"]];
// Where the map looks when the tenant has no geofence and no recent fix yet: the centre
// of Madrid, where the API's own examples put their stores, close enough to draw a store.
const DEFAULT_VIEW = { center: [40.4168, -3.7038], zoom: 17 };
// Degrees are written with six decimals (about 0.1 m), radii with one (0.1 m): finer
// figures say nothing about a shop and would make the form jitter after every drag.
const DEGREE_DIGITS = 6;
const METRE_DIGITS = 1;
// A shape read back from the form equals the one the map wrote within these.
const DEGREE_TOLERANCE = 1e-6;
const METRE_TOLERANCE = 0.1;
// The same rule as the API's ids (cloud.places.validation.ID_PATTERN).
const ID_RULE = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
const SAVED_STYLE = { color: "#1f4e79", weight: 2, fillOpacity: 0.15 };
const DRAFT_STYLE = { color: "#b35c00", weight: 3, fillOpacity: 0.2, dashArray: "6 4" };
const FIX_STYLE = { radius: 5, color: "#7b1fa2", weight: 2, fillColor: "#ce93d8", fillOpacity: 0.9 };
const ACCURACY_STYLE = { color: "#7b1fa2", weight: 0, fillOpacity: 0.08, interactive: false };
// Bringing shapes into view: at most street level, and at once (a view change asked for
// while an animated one runs would be dropped by Leaflet).
const FIT = { padding: [40, 40], maxZoom: 18, animate: false };
// A shape smaller than this on screen (pixels corner to corner) is hard to see, and its
// handles overlap: opening its form zooms in.
const SMALL_SHAPE_PX = 40;

const EMPTY_FORM = {
  id: "", store: "", dwell: "300", timezone: "", kind: "circle", lat: "", lon: "",
  radius: "", vertices: "", alwaysActive: true,
  hours: Object.fromEntries(DAYS.map(([day]) => [day, ""])),
};

// ---- definitions <-> form ------------------------------------------------------------

const degrees = (value) => Number(value.toFixed(DEGREE_DIGITS)).toString();
const metres = (value) => Number(value.toFixed(METRE_DIGITS)).toString();

/** Rings of [lat, lon] (open) from a GeoJSON polygon's rings of [lon, lat] (closed). */
function ringsOfCoordinates(coordinates) {
  return coordinates.map((ring) => {
    const open = ring.length > 1 && ring[0][0] === ring.at(-1)[0] && ring[0][1] === ring.at(-1)[1]
      ? ring.slice(0, -1) : ring;
    return open.map(([lon, lat]) => [lat, lon]);
  });
}

/** The form's text for polygon rings: a line per vertex, a blank line before each hole. */
function verticesText(rings) {
  return rings.map((ring) => ring.map(([lat, lon]) => `${degrees(lat)}, ${degrees(lon)}`)
    .join("\n")).join("\n\n");
}

/** The form's fields for a shape as the map hands it over. */
function shapeFields(shape) {
  if (shape.kind === "circle") {
    return { kind: "circle", lat: degrees(shape.lat), lon: degrees(shape.lon),
      radius: metres(shape.radius) };
  }
  return { kind: "polygon", vertices: verticesText(shape.rings) };
}

/** The form's strings from a geofence as the API returns it. */
function formOf(geofence, storeZone) {
  const { definition } = geofence;
  const circle = definition.shape.circle;
  const shape = circle
    ? { kind: "circle", lat: String(circle.lat), lon: String(circle.lon), radius: String(circle.radius_m) }
    : { kind: "polygon", vertices: verticesText(ringsOfCoordinates(definition.shape.coordinates)) };
  const hours = { ...EMPTY_FORM.hours };
  for (const [day, intervals] of Object.entries(definition.hours || {})) {
    hours[day] = intervals.map(([opens, closes]) => `${opens}-${closes}`).join(", ");
  }
  return {
    ...EMPTY_FORM, ...shape, id: geofence.id, store: geofence.store,
    dwell: String(definition.dwell_after_s),
    timezone: definition.timezone === storeZone ? "" : definition.timezone,
    alwaysActive: !definition.hours, hours,
  };
}

function number(text) {
  const cleaned = String(text).trim().replace(",", ".");
  if (cleaned === "" || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(cleaned)) return null;
  return Number(cleaned);
}

const VERTEX_LINE = /^\s*([-+]?\d+(?:\.\d+)?)\s*[,;\s]\s*([-+]?\d+(?:\.\d+)?)\s*$/;

/** Rings of [lat, lon] from the vertices text, or the line that is not "lat, lon". */
function parseVertices(text) {
  const rings = [[]];
  const lines = text.split("\n");
  for (const [index, line] of lines.entries()) {
    if (!line.trim()) {
      if (rings.at(-1).length) rings.push([]);
      continue;
    }
    const match = VERTEX_LINE.exec(line);
    if (!match) return { error: `line ${index + 1} is not "latitude, longitude"` };
    rings.at(-1).push([Number(match[1]), Number(match[2])]);
  }
  if (!rings.at(-1).length) rings.pop();
  if (!rings.length) return { error: "give the outline's corners, one \"latitude, longitude\" per line" };
  return { rings };
}

const INTERVAL = /^(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})$/;

/** [["09:30", "21:00"], ...] from "9:30-21:00, 22:00-02:00", or why not. */
function parseIntervals(text) {
  const intervals = [];
  for (const part of text.split(",").map((item) => item.trim()).filter(Boolean)) {
    const match = INTERVAL.exec(part);
    if (!match) return { error: `"${part}" is not an interval such as 09:30-21:00` };
    const pad = (value) => value.padStart(2, "0");
    intervals.push([`${pad(match[1])}:${match[2]}`, `${pad(match[3])}:${match[4]}`]);
  }
  return { intervals };
}

/** The map's shape from the form, or null while the coordinates are incomplete. */
function shapeOf(form) {
  if (form.kind === "circle") {
    const [lat, lon, radius] = [number(form.lat), number(form.lon), number(form.radius)];
    if (lat === null || lon === null || radius === null || radius <= 0) return null;
    if (Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
    return { kind: "circle", lat, lon, radius };
  }
  const { rings } = parseVertices(form.vertices);
  if (!rings || rings.some((ring) => ring.length < 3)) return null;
  return { kind: "polygon", rings };
}

const problem = (loc, msg) => ({ loc: ["body", ...loc], msg });

/** The API's body from the form, or the problems that keep it from being sent (in the
 *  API's own form, so both show at the same fields). */
function bodyOf(form) {
  const problems = [];
  const numeric = (text, loc, example) => {
    const value = number(text);
    if (value === null) problems.push(problem(loc, `a number, e.g. ${example}`));
    return value;
  };
  let shape;
  if (form.kind === "circle") {
    shape = { circle: {
      lat: numeric(form.lat, ["shape", "circle", "lat"], "40.4168"),
      lon: numeric(form.lon, ["shape", "circle", "lon"], "-3.7038"),
      radius_m: numeric(form.radius, ["shape", "circle", "radius_m"], "120"),
    } };
  } else {
    const { rings, error } = parseVertices(form.vertices);
    if (error) problems.push(problem(["shape", "coordinates"], error));
    const closed = (ring) => [...ring, ring[0]].map(([lat, lon]) => [lon, lat]);
    shape = { type: "Polygon", coordinates: (rings || []).map(closed) };
  }
  let hours = null;
  if (!form.alwaysActive) {
    hours = {};
    for (const [day] of DAYS) {
      const { intervals, error } = parseIntervals(form.hours[day]);
      if (error) problems.push(problem(["hours", day], error));
      else if (intervals.length) hours[day] = intervals;
    }
  }
  if (!form.store) problems.push(problem(["store"], "choose the store this geofence belongs to"));
  const body = {
    store: form.store, shape, dwell_after_s: numeric(form.dwell, ["dwell_after_s"], "300"),
    hours,
  };
  if (form.timezone.trim()) body.timezone = form.timezone.trim();
  return { body, problems };
}

/** A problem's words for the form field it belongs to (a vertex's position named). */
function problemText(item) {
  const [, , what, ring, vertex] = item.loc;
  if (what === "coordinates" && Number.isInteger(ring)) {
    const where = ring === 0 ? "outline" : `hole ${ring}`;
    return Number.isInteger(vertex) ? `${where}, corner ${vertex + 1}: ${item.msg}` : `${where}: ${item.msg}`;
  }
  return item.msg;
}

/** Messages of the problems whose location starts with `prefix` (after "body"). */
function messagesAt(problems, prefix, { exact = false } = {}) {
  const found = problems.filter((item) => item.loc[0] === "body"
    && (!exact || item.loc.length === prefix.length + 1)
    && prefix.every((part, index) => String(item.loc[index + 1]) === String(part)));
  return found.map(problemText).join("; ") || null;
}

// ---- the map --------------------------------------------------------------------------

/** A Leaflet layer for a shape (not yet on a map). */
function layerOf(shape, style, extra = {}) {
  if (shape.kind === "circle") {
    return L.circle([shape.lat, shape.lon], { ...style, ...extra, radius: shape.radius });
  }
  return L.polygon(shape.rings, { ...style, ...extra });
}

/** The shape of a drawn or edited Leaflet layer. */
function shapeOfLayer(layer) {
  if (layer instanceof L.Circle) {
    const centre = layer.getLatLng();
    return { kind: "circle", lat: centre.lat, lon: centre.lng, radius: layer.getRadius() };
  }
  const latLngs = layer.getLatLngs();
  const rings = Array.isArray(latLngs[0]) ? latLngs : [latLngs];
  return { kind: "polygon", rings: rings.map((ring) => ring.map((point) => [point.lat, point.lng])) };
}

function shapeOfDefinition(definition) {
  const circle = definition.shape.circle;
  if (circle) return { kind: "circle", lat: circle.lat, lon: circle.lon, radius: circle.radius_m };
  return { kind: "polygon", rings: ringsOfCoordinates(definition.shape.coordinates) };
}

function sameShape(one, other) {
  if (!one || !other || one.kind !== other.kind) return false;
  const near = (a, b, tolerance) => Math.abs(a - b) <= tolerance;
  if (one.kind === "circle") {
    return near(one.lat, other.lat, DEGREE_TOLERANCE) && near(one.lon, other.lon, DEGREE_TOLERANCE)
      && near(one.radius, other.radius, METRE_TOLERANCE);
  }
  return one.rings.length === other.rings.length && one.rings.every((ring, at) =>
    ring.length === other.rings[at].length && ring.every(([lat, lon], index) =>
      near(lat, other.rings[at][index][0], DEGREE_TOLERANCE)
      && near(lon, other.rings[at][index][1], DEGREE_TOLERANCE)));
}

/** Geoman's toolbar buttons are links named only by their container's title: name them. */
function nameDrawButtons(container) {
  for (const box of container.querySelectorAll(".leaflet-pm-toolbar .button-container[title]")) {
    box.querySelector("a.leaflet-buttons-control-button")?.setAttribute("aria-label", box.title);
  }
}

function fixLabel(fix) {
  return `Customer ${fix.customer_id} at ${when(fix.at)} (within ${Math.round(fix.accuracy_m)} m)`;
}

/** The form's shape on the map; editable (vertices, centre, radius, and dragged as a
 *  whole) for a member who may, each change handed to `onEdited`. */
function drawDraft(map, shape, writable, onEdited) {
  const layer = layerOf(shape, DRAFT_STYLE, writable ? {} : { pmIgnore: true }).addTo(map);
  if (writable) {
    layer.pm.enable({ allowSelfIntersection: false, draggable: true, snappable: false });
    const edited = () => onEdited(shapeOfLayer(layer));
    layer.on("pm:edit", edited);
    layer.on("pm:dragend", edited);
  }
  return layer;
}

function GeofenceMap({ geofences, fixes, selected, draft, opened, focus, writable, onShape, onPick }) {
  const box = useRef(null);
  const state = useRef(null);
  const latest = useRef({});
  latest.current = { onShape, onPick };

  useEffect(() => {
    const map = L.map(box.current, { minZoom: 2, maxZoom: 21, zoomSnap: 0.5 });
    if (context.tiles?.url) {
      L.tileLayer(context.tiles.url, {
        attribution: context.tiles.attribution || "", maxZoom: 21, maxNativeZoom: 19,
      }).addTo(map);
    }
    L.control.scale({ imperial: false }).addTo(map);
    map.setView(DEFAULT_VIEW.center, DEFAULT_VIEW.zoom);
    // Fixes above the shapes (the overlay pane is at 400, geoman's handles at 600).
    map.createPane("fixes").style.zIndex = "450";
    const current = {
      map, saved: L.featureGroup().addTo(map), fixes: L.featureGroup().addTo(map),
      draft: null, draftShape: null, fitted: false,
    };
    if (writable) {
      map.pm.setLang("en", { buttonTitles: {
        drawPolyButton: "Draw a polygon", drawCircleButton: "Draw a circle",
      } }, "en");
      map.pm.setGlobalOptions({ snappable: false, allowSelfIntersection: false,
        pathOptions: DRAFT_STYLE, templineStyle: DRAFT_STYLE });
      map.pm.addControls({
        position: "topleft", drawMarker: false, drawCircleMarker: false, drawPolyline: false,
        drawRectangle: false, drawText: false, editMode: false, dragMode: false,
        cutPolygon: false, removalMode: false, rotateMode: false, drawPolygon: true,
        drawCircle: true,
      });
      nameDrawButtons(box.current);
      map.on("pm:create", ({ layer }) => {
        const shape = shapeOfLayer(layer);
        layer.remove();
        latest.current.onShape(shape, "drawn");
      });
    }
    state.current = current;
    return () => map.remove();
  }, []);

  // The saved geofences, except the one the form holds (drawn as the draft instead).
  useEffect(() => {
    const { saved } = state.current;
    saved.clearLayers();
    for (const geofence of geofences) {
      if (geofence.id === selected) continue;
      const layer = layerOf(shapeOfDefinition(geofence.definition), SAVED_STYLE, { pmIgnore: true });
      layer.bindTooltip(geofence.id, { permanent: true, direction: "center", className: "geofence-label" });
      layer.on("click", () => {
        if (!state.current.map.pm.globalDrawModeEnabled()) latest.current.onPick(geofence.id);
      });
      saved.addLayer(layer);
    }
  }, [geofences, selected]);

  useEffect(() => {
    const layers = state.current.fixes;
    layers.clearLayers();
    for (const fix of fixes) {
      layers.addLayer(L.circle([fix.lat, fix.lon], {
        ...ACCURACY_STYLE, radius: fix.accuracy_m, pane: "fixes", pmIgnore: true,
      }));
      const marker = L.circleMarker([fix.lat, fix.lon], {
        ...FIX_STYLE, className: "fix-marker", pane: "fixes", pmIgnore: true,
      });
      marker.bindTooltip(fixLabel(fix));
      layers.addLayer(marker);
    }
  }, [fixes]);

  // The view: once, to everything there is; later to a geofence picked from the list.
  useEffect(() => {
    const current = state.current;
    if (current.fitted) return;
    const bounds = L.latLngBounds([]);
    for (const group of [current.saved, current.fixes]) {
      if (group.getLayers().length) bounds.extend(group.getBounds());
    }
    if (bounds.isValid()) current.map.fitBounds(bounds, FIT);
    current.fitted = true;
  }, [geofences, fixes]);

  // The form's shape, drawn and (for a member who may) editable by hand. A form just
  // opened brings its shape into view if it is out of it or too small to work on; while
  // it is typed in, only if it leaves the view.
  useEffect(() => {
    const current = state.current;
    const { map } = current;
    const reopened = current.opened !== opened;
    current.opened = opened;
    if (!draft) {
      current.draft?.remove();
      current.draft = null;
      current.draftShape = null;
      return;
    }
    if (!current.draft || !sameShape(current.draftShape, draft)) {
      current.draft?.remove();
      current.draft = drawDraft(map, draft, writable, (shape) => {
        current.draftShape = shape;
        latest.current.onShape(shape, "edited");
      });
      current.draftShape = draft;
    }
    const bounds = current.draft.getBounds();
    const corner = (point) => map.latLngToContainerPoint(point);
    const size = corner(bounds.getNorthEast()).distanceTo(corner(bounds.getSouthWest()));
    if (!map.getBounds().contains(bounds) || (reopened && size < SMALL_SHAPE_PX)) {
      map.fitBounds(bounds, FIT);
    }
  }, [draft, opened, writable]);

  // "Show on map": bring the form's shape into view.
  useEffect(() => {
    const current = state.current;
    if (focus && current.draft) current.map.fitBounds(current.draft.getBounds(), FIT);
  }, [focus]);

  const label = writable
    ? "Map of the geofences. Draw a new one with the buttons at its top left, or drag the shape being edited; the form beside the map holds the same coordinates."
    : "Map of the geofences";
  return html`<div class="map geofence-map" ref=${box} role="region" aria-label=${label}></div>`;
}

// ---- the form ---------------------------------------------------------------------------

function TextArea({ label, value, onInput, hint, error, ...rest }) {
  return html`<${Field} label=${label} hint=${hint} error=${error} wide>
    ${(control) => html`<textarea value=${value} ...${control} ...${rest}
      onInput=${(event) => onInput(event.currentTarget.value)}></textarea>`}
  <//>`;
}

function ShapeKind({ kind, onChange }) {
  const name = useId("shape-kind");
  return html`<div class="shape-kind" role="radiogroup" aria-label="Shape">
    ${[["circle", "Circle"], ["polygon", "Polygon"]].map(([value, text]) => html`
      <label key=${value}><input type="radio" name=${name} value=${value} checked=${kind === value}
        onChange=${() => onChange(value)} /> ${text}</label>`)}
  </div>`;
}

function GeofenceForm({ form, change, isNew, stores, writable, problems, error, busy,
  onSave, onDelete, onClose, onShow }) {
  const at = (...prefix) => messagesAt(problems, prefix);
  const store = stores.find((item) => item.key === form.store);
  const idError = (isNew && form.id && !ID_RULE.test(form.id)
    ? "1-128 letters, digits, '.', '_', ':', '@' or '-', starting with a letter or digit." : null)
    || messagesAt(problems, ["id"]);
  const storeOptions = [["", "Choose a store"], ...stores.map((item) => [item.key, `${item.name} (${item.key})`])];
  const dayError = (day) => messagesAt(problems, ["hours", day]);
  const title = isNew ? "New geofence" : `${writable ? "Edit" : "Geofence"} ${form.id}`;
  // Opening a form (a button, a shape drawn or picked on the map) brings the keyboard to
  // its first field, or to its heading when nothing may be changed.
  const formRef = useRef(null);
  useEffect(() => {
    const element = formRef.current;
    const first = element?.querySelector("input:not([disabled]), select:not([disabled])");
    (first || element?.querySelector("h3"))?.focus();
  }, [title]);
  return html`<form class="stack geofence-form" aria-label=${title} onSubmit=${onSave} novalidate
      ref=${formRef}>
    <h3 tabindex="-1">${title}</h3>
    <${ErrorNotice} error=${error} title="Geofence not saved" />
    <fieldset class="plain stack" disabled=${!writable}>
      <${TextField} label="Geofence id" value=${form.id} onInput=${change("id")} required
        disabled=${!isNew} error=${idError} hint=${isNew ? "How scenarios and the API name it." : null} />
      <${SelectField} label="Store" value=${form.store} onChange=${change("store")}
        options=${storeOptions} error=${at("store")} />
      <${TextField} label="Dwell threshold (s)" inputmode="decimal" value=${form.dwell}
        onInput=${change("dwell")} error=${at("dwell_after_s")}
        hint="Seconds inside before a dwell fires: 300 is five minutes." />
      <fieldset class="stack">
        <legend>Shape</legend>
        <${ShapeKind} kind=${form.kind} onChange=${change("kind")} />
        ${form.kind === "circle" ? html`<div class="row">
            <${TextField} label="Latitude" inputmode="decimal" value=${form.lat}
              onInput=${change("lat")} error=${at("shape", "circle", "lat")} />
            <${TextField} label="Longitude" inputmode="decimal" value=${form.lon}
              onInput=${change("lon")} error=${at("shape", "circle", "lon")} />
          </div>
          <${TextField} label="Radius (m)" inputmode="decimal" value=${form.radius}
            onInput=${change("radius")} error=${at("shape", "circle", "radius_m")} />` : html`<${TextArea} label="Corners" value=${form.vertices} rows="6"
            onInput=${change("vertices")} error=${at("shape", "coordinates")}
            hint="One “latitude, longitude” per line, in order around the outline; a blank line starts a hole." />`}
        ${messagesAt(problems, ["shape"], { exact: true })
          && html`<p class="field-error">${messagesAt(problems, ["shape"], { exact: true })}</p>`}
        <div><button type="button" class="secondary small" onClick=${onShow}>Show on map</button></div>
      </fieldset>
      <${TextField} label="Time zone" value=${form.timezone} onInput=${change("timezone")}
        error=${at("timezone")} placeholder=${store?.time_zone || ""}
        hint=${`IANA name of the zone the hours are in; empty: the store's${store ? ` (${store.time_zone})` : ""}.`} />
      <fieldset class="stack">
        <legend>Operating hours</legend>
        <${CheckField} label="Always active" checked=${form.alwaysActive}
          onChange=${change("alwaysActive")} />
        ${!form.alwaysActive && html`
          <p class="hint">The store's wall clock, e.g. 09:30-21:00; several with commas;
            an interval closing at or before it opens runs past midnight. Empty: closed.</p>
          <div class="hours">${DAYS.map(([day, name]) => html`
            <${TextField} key=${day} label=${name} value=${form.hours[day]}
              onInput=${(value) => change("hours")({ ...form.hours, [day]: value })}
              error=${dayError(day)} />`)}
          </div>`}
        ${messagesAt(problems, ["hours"], { exact: true })
          && html`<p class="field-error">${messagesAt(problems, ["hours"], { exact: true })}</p>`}
      </fieldset>
    </fieldset>
    <div class="actions">
      ${writable && html`<button type="submit" disabled=${busy}>${busy ? "Saving…" : "Save geofence"}</button>`}
      <button type="button" class="secondary" onClick=${onClose}>${writable ? "Cancel" : "Close"}</button>
      ${writable && !isNew && html`<${ConfirmButton} label="Delete" confirm=${`Delete ${form.id}`}
        onConfirm=${onDelete} />`}
    </div>
  </form>`;
}

// ---- the page ---------------------------------------------------------------------------

function describeShape(definition) {
  const circle = definition.shape.circle;
  if (circle) return `circle, ${count(circle.radius_m)} m`;
  const corners = definition.shape.coordinates[0].length - 1;
  const holes = definition.shape.coordinates.length - 1;
  return `polygon, ${corners} corners${holes ? `, ${holes} hole${holes > 1 ? "s" : ""}` : ""}`;
}

function describeHours(hours) {
  if (!hours) return "always";
  return DAYS.filter(([day]) => hours[day]).map(([day, name]) =>
    `${name.slice(0, 3)} ${hours[day].map(([opens, closes]) => `${opens}–${closes}`).join(", ")}`).join("; ");
}

function RecentFixes({ fixes }) {
  if (!can(SEE_LOCATIONS)) {
    return html`<p class="hint">Your role (${context.role_label}) does not see where app users
      are (it needs ${SEE_LOCATIONS}).</p>`;
  }
  if (fixes.error) return html`<${ErrorNotice} error=${fixes.error} title="Recent locations not shown" />`;
  if (!fixes.data) return null;
  const rows = fixes.data.fixes;
  const reports = { 0: "No location reports", 1: "1 location report" }[rows.length]
    ?? `${count(rows.length)} location reports`;
  return html`<p class="hint"><span class="fix-dot" aria-hidden="true"></span> ${reports} from
      app users who allow location-based marketing, since ${when(fixes.data.since)} (dots on
      the map; the shaded disc is the phone's accuracy).</p>
    ${rows.length > 0 && html`<details><summary>List the location reports</summary>
      <${Table} caption="Recent location reports, newest first" rows=${rows} columns=${[
        ["Customer", (fix) => fix.customer_id],
        ["Reported", (fix) => when(fix.at)],
        ["Latitude", (fix) => degrees(fix.lat)],
        ["Longitude", (fix) => degrees(fix.lon)],
        ["Accuracy", (fix) => `${Math.round(fix.accuracy_m)} m`],
      ]} />
    </details>`}`;
}

function GeofencesPage() {
  const list = useApi(tenantPath("/geofences"));
  const stores = useApi(tenantPath("/stores"));
  const fixes = useApi(can(SEE_LOCATIONS) ? tenantPath("/locations/recent") : null);
  const writable = can(WRITE);
  const [editing, setEditing] = useState(null);
  const [problems, setProblems] = useState([]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState(null);
  const [focus, setFocus] = useState(0);
  const [opened, setOpened] = useState(0);

  const geofences = list.data?.geofences || [];
  const storeRows = stores.data || [];
  const zoneOf = (key) => storeRows.find((item) => item.key === key)?.time_zone;

  function open(next) {
    setEditing(next);
    setOpened((n) => n + 1);
    setProblems([]);
    setError(null);
    setMessage(null);
  }
  const pick = (id) => {
    const geofence = geofences.find((item) => item.id === id);
    if (geofence) open({ isNew: false, form: formOf(geofence, zoneOf(geofence.store)) });
  };
  const startNew = (fields = {}) => open({ isNew: true, form: {
    ...EMPTY_FORM, store: storeRows.length === 1 ? storeRows[0].key : "", ...fields,
  } });
  const change = (name) => (value) => setEditing((previous) => ({
    ...previous, form: { ...previous.form, [name]: value },
  }));
  // A shape drawn on the map starts a new geofence (or replaces the shape of the new one
  // in the form); a shape edited on the map is the form's.
  const onShape = (shape, how) => {
    if (!writable) return;
    if (how === "drawn" && !editing?.isNew) {
      startNew(shapeFields(shape));
      return;
    }
    setMessage(null);
    setEditing((previous) => previous && {
      ...previous, form: { ...previous.form, ...shapeFields(shape) },
    });
  };

  async function save(event) {
    event.preventDefault();
    const form = editing.form;
    const { body, problems: found } = bodyOf(form);
    if (editing.isNew && !ID_RULE.test(form.id)) {
      found.unshift(problem(["id"], "give the geofence an id: letters, digits, '.', '_', ':', '@' or '-'"));
    }
    setProblems(found);
    setError(found.length ? { message: "check the fields marked below", problems: found } : null);
    if (found.length) return;
    setBusy(true);
    try {
      const saved = await api("PUT", tenantPath(`/geofences/${encodeURIComponent(form.id)}`), body);
      setEditing(null);
      setProblems([]);
      setMessage(`Geofence ${saved.id} saved.`);
      list.reload();
    } catch (failure) {
      // The id travels in the path: a problem with it is the id field's.
      const items = (failure.problems || []).map((item) => (item.loc?.[0] === "path"
        ? problem(["id"], item.msg) : item));
      setProblems(items);
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    const { id } = editing.form;
    try {
      await api("DELETE", tenantPath(`/geofences/${encodeURIComponent(id)}`));
      setEditing(null);
      setMessage(`Geofence ${id} deleted; customers inside it exit now.`);
      list.reload();
    } catch (failure) {
      setError(failure);
    }
  }

  const selected = editing && !editing.isNew ? editing.form.id : null;
  const draft = editing ? shapeOf(editing.form) : null;
  // Once loaded the map stays (a reload after a save keeps the data it had meanwhile).
  const settled = (state) => state.data !== null || state.error !== null;
  const ready = settled(list) && settled(stores) && (!can(SEE_LOCATIONS) || settled(fixes));
  return html`
    <${Section} title="Map" actions=${writable && html`<button type="button"
        onClick=${() => startNew()}>New geofence</button>`}>
      <${ReadOnlyNote} permission=${WRITE} />
      ${!context.tiles?.url && html`<p class="hint map-note">Map tiles are not configured
        (setting console.map_tiles_url): shapes are drawn on a plain background, with the
        scale at the bottom left.</p>`}
      ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
      <${ErrorNotice} error=${list.error || stores.error} title="Could not load the geofences" />
      ${writable && ready && storeRows.length === 0 && html`<${Notice} kind="warning"><p>
        A geofence belongs to a store: define one first on the
        <a href=${`/console/t/${encodeURIComponent(context.tenant)}/stores`}>Stores page</a>.</p><//>`}
      <div class="geofence-editor">
        ${ready && html`<${GeofenceMap} geofences=${geofences}
          fixes=${fixes.data?.fixes || []} selected=${selected} draft=${draft} opened=${opened}
          focus=${focus}
          writable=${writable} onShape=${onShape} onPick=${pick} />`}
        <div class="geofence-side">
          ${editing ? html`<${GeofenceForm} form=${editing.form} change=${change}
              isNew=${editing.isNew} stores=${storeRows} writable=${writable}
              problems=${problems} error=${error} busy=${busy} onSave=${save}
              onDelete=${remove} onClose=${() => open(null)} onShow=${() => setFocus((n) => n + 1)} />`
            : html`<p class="hint">${writable
              ? "Draw a circle or a polygon with the buttons on the map, or choose New geofence to type its coordinates. Choose a geofence on the map or in the list to change it."
              : "Choose a geofence on the map or in the list to see its definition."}</p>`}
        </div>
      </div>
      <${RecentFixes} fixes=${fixes} />
    <//>
    <${Section} title="Geofences">
      <${Loading} state=${list}>${(data) => html`<${Table} caption="The tenant's geofences"
        rowKey=${(geofence) => geofence.id} rows=${data.geofences} empty="No geofences yet."
        columns=${[
          ["Id", (geofence) => html`<code>${geofence.id}</code>`],
          ["Store", (geofence) => geofence.store],
          ["Shape", (geofence) => describeShape(geofence.definition)],
          ["Dwell", (geofence) => `${count(geofence.definition.dwell_after_s)} s`],
          ["Hours", (geofence) => describeHours(geofence.definition.hours)],
          ["Updated", (geofence) => when(geofence.updated_at)],
          ["", (geofence) => html`<button type="button" class="secondary small"
            aria-label=${`${writable ? "Edit" : "Show"} ${geofence.id}`}
            onClick=${() => pick(geofence.id)}>${writable ? "Edit" : "Show"}</button>`],
        ]} />`}<//>
    <//>`;
}

mount(GeofencesPage);
