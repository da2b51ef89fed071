// Quiet hours and time zones as the Shop settings page and the store form edit them. At
// each level the API takes three answers (cloud/preferences/models.py): a window
// {start, end} ("HH:MM", on the customer's clock), "off" (none here: messages at any hour),
// or null (nothing here: the next level's apply). The form keeps the times typed while
// another answer is picked, so switching back does not lose them.
import { Field, TextField, html, problemsAt, useId, useState } from "console/lib.js";

/** Every IANA zone the browser knows, and `current` even if it does not. */
export function timeZones(current) {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const zones = new Set([...known, "UTC"]);
  if (current) zones.add(current);
  return [...zones].sort();
}

/** Zones grouped by their region ("Europe", "America"...), for a select's optgroups. */
export function byRegion(zones) {
  const groups = new Map();
  for (const zone of zones) {
    const region = zone.includes("/") ? zone.split("/")[0] : "Other";
    if (!groups.has(region)) groups.set(region, []);
    groups.get(region).push(zone);
  }
  return [...groups.entries()];
}

/** A zone picker; with `inherit`, a first choice "" that stands for null (the next level's). */
export function TimeZoneSelect({ label = "Time zone", value, onChange, error, hint, inherit, disabled }) {
  const groups = byRegion(timeZones(value));
  return html`<${Field} label=${label} error=${error} hint=${hint}>
    ${(control) => html`<select ...${control} value=${value} disabled=${disabled}
        onChange=${(event) => onChange(event.currentTarget.value)}>
      ${inherit && html`<option value="" selected=${value === ""}>${inherit}</option>`}
      ${groups.map(([region, zones]) => html`<optgroup label=${region}>
        ${zones.map((zone) => html`<option value=${zone} selected=${zone === value}>${zone.replaceAll("_", " ")}</option>`)}
      </optgroup>`)}
    </select>`}
  <//>`;
}

/** "21:30–09:00", or what no window means. */
export function windowText(window, none = "none (messages at any hour)") {
  return window && window !== "off" ? `${window.start}–${window.end}` : none;
}

/** How a level's own answer reads in a table: its window, "none", or the next level's. */
export function ownText(value, inherited) {
  if (value === null || value === undefined) return inherited;
  if (value === "off") return "none (any hour)";
  return windowText(value);
}

function answerOf(value) {
  if (value === null || value === undefined) return "inherit";
  return value === "off" ? "off" : "own";
}

/** The API's problems under `path` (["body", "quiet_hours"]), by where they are. */
export function quietProblems(error, path) {
  const at = (...rest) => problemsAt(error, [...path, ...rest]).map((problem) => problem.msg);
  const start = at("window", "start");
  const end = at("window", "end");
  const all = at();
  const rest = all.filter((message) => !start.includes(message) && !end.includes(message));
  const join = (messages) => messages.join("; ") || null;
  return { start: join(start), end: join(end), whole: join(rest) };
}

/** Why a window cannot be saved, before asking the API: equal times (which the API
 * refuses too, in its own words), or null. */
export function quietInvalid(value) {
  if (!value || value === "off" || !value.start || value.start !== value.end) return null;
  return "Start and end are the same: to have no quiet hours, choose “None”.";
}

/** The three answers as radio buttons in a fieldset, with the window's two times. */
export function QuietHoursField({ value, onChange, inherit, off, problems = {}, disabled, hint }) {
  const name = useId("quiet");
  const errorId = `${name}-error`;
  const answer = answerOf(value);
  const whole = quietInvalid(value) || problems.whole;
  const [times, setTimes] = useState(answer === "own" ? value : { start: "21:00", end: "09:00" });
  const pick = (next) => {
    if (next === "inherit") onChange(null);
    else if (next === "off") onChange("off");
    else onChange({ ...times });
  };
  const setTime = (which) => (text) => {
    const changed = { ...times, [which]: text };
    setTimes(changed);
    onChange(changed);
  };
  const choices = [["inherit", inherit], ["own", "Own hours"], ["off", off]];
  return html`<fieldset class=${`quiet-hours${whole ? " invalid" : ""}`}
      aria-describedby=${whole ? errorId : undefined}>
    <legend>Quiet hours</legend>
    ${hint && html`<p class="hint">${hint}</p>`}
    <div class="quiet-choices">
      ${choices.map(([key, text]) => html`<label key=${key}><input type="radio" name=${name}
        value=${key} checked=${answer === key} disabled=${disabled}
        onChange=${() => pick(key)} /> ${text}</label>`)}
    </div>
    <div class="row">
      <${TextField} label="Quiet hours start" type="time" step="60" value=${times.start}
        onInput=${setTime("start")} disabled=${disabled || answer !== "own"}
        required=${answer === "own"} error=${problems.start} />
      <${TextField} label="Quiet hours end" type="time" step="60" value=${times.end}
        onInput=${setTime("end")} disabled=${disabled || answer !== "own"}
        required=${answer === "own"} error=${problems.end}
        hint="Before the start for hours over midnight." />
    </div>
    ${whole && html`<p class="field-error" id=${errorId}>${whole}</p>`}
  </fieldset>`;
}
