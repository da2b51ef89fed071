// The scenario editor: a form for everything a ScenarioSpec holds (entry, audience,
// holdout, variants, caps, and each step by its type), saving with PUT /scenarios/{key}
// exactly the JSON the API takes. A 422's problems are shown at the step and field their
// `loc` names (["body", "steps", 2, "wait_for", "timeout"]), even after steps moved.
import {
  CheckField, Field, SelectField, TextField, api, html, tenantPath, useApi, useId, useRef,
  useState,
} from "console/lib.js";
import { DryRun } from "console/scenario-dry-run.js";
import {
  CHANNELS, END, Flow, STEP_LABEL, STEP_TYPES, TRIGGER_KINDS, durationParts, isoDuration,
} from "console/scenario-flow.js";

const OPS = [["eq", "equals"], ["ne", "differs from"], ["in", "is one of"], ["gt", "greater than"],
  ["gte", "at least"], ["lt", "less than"], ["lte", "at most"], ["exists", "is set"]];
const SPEND_OPS = OPS.filter(([op]) => ["gt", "gte", "lt", "lte"].includes(op));
const REENTRY = [["after_exit", "Again once the previous journey ended"], ["once", "Once per customer, ever"],
  ["always", "On every matching trigger"]];
const CONSENTS = [...CHANNELS, ["location_marketing", "Location-based marketing"]];
const STEP_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

let uidSequence = 0;
const newUid = () => `s${++uidSequence}`;

/** The form's state from a saved spec (or a new one): steps get a client-side uid, so a
 * problem stays with its step when steps move. */
export function formOf(spec) {
  return {
    key: "", name: "", entry: { event: "cart.abandoned" }, conditions: null, exit_on: [],
    holdout_percent: 0, variants: [], caps: [], ...structuredClone(spec || {}),
    steps: (spec?.steps || []).map((step) => ({ ...structuredClone(step), _uid: newUid() })),
  };
}

// ---- the body the API takes ---------------------------------------------------------------

/** Empty optional values left out, recursively (false and 0 are kept). */
function clean(value) {
  if (Array.isArray(value)) return value.map(clean);
  if (value && typeof value === "object") {
    const result = {};
    for (const [name, item] of Object.entries(value)) {
      if (name === "_uid" || item === null || item === undefined || item === "") continue;
      result[name] = clean(item);
    }
    return result;
  }
  return value;
}

/** A whole number from a field, or what was typed (so the API names the field). */
function integer(text) {
  if (text === "" || text === null || text === undefined) return undefined;
  return /^-?\d+$/.test(String(text).trim()) ? Number(text) : text;
}

function offerBody(offer) {
  return offer ? { ...offer, min_discount: integer(offer.min_discount) } : offer;
}

function stepBody(step) {
  const body = { ...step };
  if (step.type === "send" || step.type === "issue_coupon") body.offer = offerBody(step.offer);
  if (step.type === "send") {
    body.variants = Object.fromEntries(Object.entries(step.variants || {})
      .map(([name, override]) => [name, clean({ ...override, offer: offerBody(override.offer) })])
      .filter(([, override]) => Object.keys(override).length > 0));
  }
  return body;
}

/** Exactly the JSON PUT /scenarios/{key} takes. */
export function bodyOf(form) {
  return clean({
    key: form.key, name: form.name,
    entry: { ...form.entry, inactive_days: integer(form.entry.inactive_days) },
    conditions: form.conditions, exit_on: form.exit_on,
    holdout_percent: integer(form.holdout_percent) ?? 0,
    variants: form.variants.map((variant) => ({ key: variant.key, weight: integer(variant.weight) })),
    caps: form.caps.map((cap) => ({ max: integer(cap.max), per: cap.per })),
    steps: form.steps.map(stepBody),
  });
}

// ---- problems -----------------------------------------------------------------------------

/** A 422's problems, each with where it is: the step (by uid, as sent) and the rest. */
function placed(error, sentUids) {
  return (error?.problems || []).map((problem) => {
    const loc = (problem.loc || []).map(String);
    if (loc[1] === "steps" && loc.length > 2) {
      const index = Number(loc[2]);
      return { ...problem, uid: sentUids[index], index, rest: loc.slice(4) };
    }
    return { ...problem, rest: loc.slice(1) };
  });
}

/** The messages of problems whose place starts with `prefix`. */
function messages(problems, prefix) {
  const found = problems.filter((problem) => prefix.every((part, at) => problem.rest[at] === String(part)));
  return found.length ? found.map((problem) => problem.msg).join("; ") : null;
}

function within(problems, prefix) {
  return problems
    .filter((problem) => prefix.every((part, at) => problem.rest[at] === String(part)))
    .map((problem) => ({ ...problem, rest: problem.rest.slice(prefix.length) }));
}

// ---- small fields ---------------------------------------------------------------------------

/** A field's own text (what is being typed) over the value it stands for: kept while the
 * value is the one it last gave, started again when the value changes from elsewhere (a
 * row removed above it, a kind switched). */
function useTyped(value, textOf) {
  const state = useRef(null);
  const [, redraw] = useState(0);
  if (state.current === null || JSON.stringify(value) !== JSON.stringify(state.current.value)) {
    state.current = { value, text: textOf(value) };
  }
  const type = (text, newValue) => {
    state.current = { value: newValue, text };
    redraw((n) => n + 1);
    return newValue;
  };
  return [state.current.text, type];
}

/** A duration as an amount and a unit; writes back the ISO 8601 duration the API takes. */
export function DurationField({ label, value, onChange, hint, error, disabled, optional = true }) {
  const [[amount, unit], type] = useTyped(value ?? null, durationParts);
  const change = (nextAmount, nextUnit) => onChange(type([nextAmount, nextUnit], isoDuration(nextAmount, nextUnit)));
  return html`<${Field} label=${label} hint=${hint ?? (optional ? "Empty for none." : null)} error=${error}>
    ${(control) => html`<div class="duration">
      <input type="number" min="0" step="any" value=${amount} disabled=${disabled} ...${control}
        onInput=${(event) => change(event.currentTarget.value, unit)} />
      <select aria-label=${`${label} unit`} disabled=${disabled} value=${unit}
        onChange=${(event) => change(amount, event.currentTarget.value)}>
        ${["minutes", "hours", "days", "seconds"].map((name) => html`
          <option value=${name} selected=${name === unit}>${name}</option>`)}
      </select></div>`}
  <//>`;
}

/** A list of names typed with commas ("vip, buyer"). */
function ListField({ label, value, onChange, hint, error, disabled }) {
  const [text, type] = useTyped(value || [], (list) => list.join(", "));
  return html`<${TextField} label=${label} value=${text} hint=${hint} error=${error} disabled=${disabled}
    onInput=${(typed) => onChange(type(typed, typed.split(",").map((part) => part.trim()).filter(Boolean)))} />`;
}

function parseScalar(text) {
  const trimmed = text.trim();
  if (trimmed === "true" || trimmed === "false") return trimmed === "true";
  if (/^-?\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  return text;
}

function showValue(value) {
  if (Array.isArray(value)) return value.join(", ");
  return value === null || value === undefined ? "" : String(value);
}

/** A compared value: numbers and true/false are read as such; "is one of" takes a list. */
function ValueField({ label, value, op, onChange, error, disabled }) {
  const [text, type] = useTyped(value ?? null, showValue);
  if (op === "exists") return null;
  const parse = (typed) => (op === "in"
    ? typed.split(",").map((part) => part.trim()).filter(Boolean).map(parseScalar) : parseScalar(typed));
  return html`<${TextField} label=${label} value=${text} error=${error} disabled=${disabled}
    hint=${op === "in" ? "Separate the values with commas." : "Numbers and true/false are read as such."}
    onInput=${(typed) => onChange(type(typed, parse(typed)))} />`;
}

/** Tests on a trigger's attributes ({attribute, op, value}). */
function FiltersField({ legend, filters, onChange, problems, disabled }) {
  const set = (index, name, value) => onChange(filters.map((filter, at) => (at === index ? { ...filter, [name]: value } : filter)));
  return html`<fieldset class="filters"><legend>${legend}</legend>
    ${filters.length === 0 && html`<p class="hint">None: every trigger of the kind counts.</p>`}
    ${filters.map((filter, index) => html`<div class="row" key=${index}>
      <${TextField} label="Attribute" value=${filter.attribute} disabled=${disabled}
        onInput=${(value) => set(index, "attribute", value)} error=${messages(problems, [index, "attribute"])} />
      <${SelectField} label="Test" value=${filter.op || "eq"} options=${OPS} disabled=${disabled}
        onChange=${(value) => set(index, "op", value)} />
      <${ValueField} label="Value" value=${filter.value} op=${filter.op} disabled=${disabled}
        onChange=${(value) => set(index, "value", value)} error=${messages(problems, [index, "value"])} />
      ${!disabled && html`<button type="button" class="danger small"
        onClick=${() => onChange(filters.filter((_, at) => at !== index))}>Remove filter ${index + 1}</button>`}
    </div>`)}
    ${!disabled && html`<button type="button" class="secondary small"
      onClick=${() => onChange([...filters, { attribute: "", op: "eq", value: "" }])}>Add a filter</button>`}
  </fieldset>`;
}

// ---- conditions -------------------------------------------------------------------------------

const CONDITION_KINDS = [
  ["tag", "Has a tag"], ["profile", "Profile field"], ["consent", "Consents to"],
  ["purchased", "Bought"], ["message", "Got a message"], ["spend", "Lifetime spend"],
  ["since", "Time since"], ["trigger", "The trigger's attribute"],
  ["all", "All of"], ["any", "Any of"], ["not", "Not"],
];
const NEW_CONDITION = {
  tag: () => ({ tag: "" }),
  profile: () => ({ profile: "", op: "eq", value: "" }),
  consent: () => ({ consent: "push" }),
  purchased: () => ({ purchased: { category: "" } }),
  message: () => ({ message: { scenario: "", opened: true, converted: false } }),
  spend: () => ({ spend: { op: "gte", value: "" } }),
  since: () => ({ since: { event: "order", more_than: "P30D" } }),
  trigger: () => ({ trigger: { attribute: "", op: "eq", value: "" } }),
  all: () => ({ all: [{ tag: "" }] }),
  any: () => ({ any: [{ tag: "" }] }),
  not: () => ({ not: { tag: "" } }),
};

function kindOf(condition) {
  return CONDITION_KINDS.map(([kind]) => kind).find((kind) => condition && kind in condition) || "tag";
}

const TRI_STATE = [["", "either"], ["true", "yes"], ["false", "no"]];
const triValue = (value) => (value === true ? "true" : value === false ? "false" : "");
const triParse = (text) => (text === "" ? null : text === "true");

/** One condition, of any kind; "all of", "any of" and "not" hold others. `problems` are
 * placed relative to this condition (pydantic puts the kind first: ["tag", "tag"]). */
export function ConditionEditor({ condition, onChange, problems = [], disabled, depth = 0 }) {
  const kind = kindOf(condition);
  const here = messages(problems.filter((problem) => problem.rest.length === 0), []);
  const field = (...path) => messages(problems, [kind, ...path]);
  const inner = () => condition[kind] || {};
  const setInner = (name, value) => onChange({ [kind]: { ...inner(), [name]: value } });
  let body = null;
  if (kind === "tag") {
    body = html`<${TextField} label="Tag" value=${condition.tag} disabled=${disabled}
      onInput=${(value) => onChange({ tag: value })} error=${field("tag")} />`;
  } else if (kind === "profile") {
    body = html`<${TextField} label="Profile field" value=${condition.profile} disabled=${disabled}
        hint="first_name, locale, or attributes.tier" error=${field("profile")}
        onInput=${(value) => onChange({ ...condition, profile: value })} />
      <${SelectField} label="Test" value=${condition.op || "eq"} options=${OPS} disabled=${disabled}
        onChange=${(value) => onChange({ ...condition, op: value })} />
      <${ValueField} label="Value" value=${condition.value} op=${condition.op} disabled=${disabled}
        error=${field("value")} onChange=${(value) => onChange({ ...condition, value })} />`;
  } else if (kind === "consent") {
    body = html`<${SelectField} label="Consent" value=${condition.consent} options=${CONSENTS} disabled=${disabled}
      onChange=${(value) => onChange({ consent: value })} error=${field("consent")} />`;
  } else if (kind === "purchased") {
    const query = inner();
    body = html`<${TextField} label="Category" value=${query.category} disabled=${disabled}
        error=${field("purchased", "category")} onInput=${(value) => setInner("category", value)} />
      <${TextField} label="SKU" value=${query.sku} disabled=${disabled}
        error=${field("purchased", "sku")} onInput=${(value) => setInner("sku", value)} />
      <${DurationField} label="Within" value=${query.within} disabled=${disabled}
        hint="Empty for ever." error=${field("purchased", "within")} onChange=${(value) => setInner("within", value)} />`;
  } else if (kind === "message") {
    const query = inner();
    body = html`<${TextField} label="Of scenario" value=${query.scenario} disabled=${disabled}
        error=${field("message", "scenario")} onInput=${(value) => setInner("scenario", value)} />
      <${TextField} label="Step" value=${query.step} disabled=${disabled}
        error=${field("message", "step")} onInput=${(value) => setInner("step", value)} />
      <${SelectField} label="Channel" value=${query.channel || ""} options=${[["", "any"], ...CHANNELS]}
        disabled=${disabled} onChange=${(value) => setInner("channel", value || null)} />
      ${["opened", "clicked", "converted"].map((flag) => html`<${SelectField} key=${flag}
        label=${flag[0].toUpperCase() + flag.slice(1)} value=${triValue(query[flag])} options=${TRI_STATE}
        disabled=${disabled} onChange=${(value) => setInner(flag, triParse(value))} />`)}
      <${DurationField} label="Within" value=${query.within} disabled=${disabled}
        error=${field("message", "within")} onChange=${(value) => setInner("within", value)} />`;
  } else if (kind === "spend") {
    const query = inner();
    body = html`<${SelectField} label="Test" value=${query.op || "gte"} options=${SPEND_OPS} disabled=${disabled}
        onChange=${(value) => setInner("op", value)} />
      <${TextField} label="Amount" inputmode="decimal" value=${query.value} disabled=${disabled}
        error=${field("spend", "value")} onInput=${(value) => setInner("value", value)} />
      <${TextField} label="Currency" value=${query.currency || ""} maxlength="3" disabled=${disabled}
        hint="Empty: any currency. Shops selling in several should name one."
        error=${field("spend", "currency")} onInput=${(value) => setInner("currency", value || null)} />`;
  } else if (kind === "since") {
    const query = inner();
    body = html`<${SelectField} label="Last" value=${query.event} disabled=${disabled}
        options=${[["order", "order"], ["visit", "visit"], ["click", "click"], ["signup", "sign-up"]]}
        onChange=${(value) => setInner("event", value)} />
      <${DurationField} label="More than" value=${query.more_than} disabled=${disabled}
        error=${field("since", "more_than")} onChange=${(value) => setInner("more_than", value)} />
      <${DurationField} label="Less than" value=${query.less_than} disabled=${disabled}
        error=${field("since", "less_than")} onChange=${(value) => setInner("less_than", value)} />`;
  } else if (kind === "trigger") {
    const query = inner();
    body = html`<${TextField} label="Attribute" value=${query.attribute} disabled=${disabled}
        error=${field("trigger", "attribute")} onInput=${(value) => setInner("attribute", value)} />
      <${SelectField} label="Test" value=${query.op || "eq"} options=${OPS} disabled=${disabled}
        onChange=${(value) => setInner("op", value)} />
      <${ValueField} label="Value" value=${query.value} op=${query.op} disabled=${disabled}
        error=${field("trigger", "value")} onChange=${(value) => setInner("value", value)} />`;
  } else if (kind === "not") {
    body = html`<${ConditionEditor} condition=${condition.not} depth=${depth + 1} disabled=${disabled}
      problems=${within(problems, ["not", "not"])} onChange=${(value) => onChange({ not: value })} />`;
  } else {
    const parts = condition[kind] || [];
    const setPart = (index, value) => onChange({ [kind]: parts.map((part, at) => (at === index ? value : part)) });
    body = html`<ol class="conditions">${parts.map((part, index) => html`<li key=${index}>
        <${ConditionEditor} condition=${part} depth=${depth + 1} disabled=${disabled}
          problems=${within(problems, [kind, kind, index])} onChange=${(value) => setPart(index, value)} />
        ${!disabled && parts.length > 1 && html`<button type="button" class="danger small"
          onClick=${() => onChange({ [kind]: parts.filter((_, at) => at !== index) })}>Remove condition ${index + 1}</button>`}
      </li>`)}</ol>
      ${!disabled && html`<button type="button" class="secondary small"
        onClick=${() => onChange({ [kind]: [...parts, { tag: "" }] })}>Add a condition</button>`}`;
  }
  return html`<div class=${`condition depth-${depth}`}>
    <div class="row">
      <${SelectField} label=${depth === 0 ? "Condition" : "Kind"} value=${kind} options=${CONDITION_KINDS}
        disabled=${disabled} error=${here} onChange=${(value) => onChange(NEW_CONDITION[value]())} />
      ${["all", "any", "not"].includes(kind) ? null : body}
    </div>
    ${["all", "any", "not"].includes(kind) ? body : null}
  </div>`;
}

// ---- offers and jumps -------------------------------------------------------------------------

const OFFER_WAYS = [["key", "A named offer"], ["cross_sell", "Cross-sell (complementary category)"],
  ["trigger_category", "On the cart's category"], ["message_category", "Bigger offer after a scenario's message"]];

function offerWay(offer) {
  if (!offer) return "";
  if (offer.cross_sell) return "cross_sell";
  if (offer.trigger_category) return "trigger_category";
  if (offer.message_category !== undefined && offer.message_category !== null) return "message_category";
  return "key";
}

function OfferEditor({ legend, offer, onChange, optional, offers, problems, disabled }) {
  const way = offerWay(offer);
  const ways = optional ? [["", "No offer"], ...OFFER_WAYS] : OFFER_WAYS;
  const choose = (value) => {
    if (value === "") return onChange(null);
    const kept = { min_discount: offer?.min_discount };
    if (value === "key") return onChange({ ...kept, key: offers[0]?.key ?? "" });
    if (value === "message_category") return onChange({ ...kept, message_category: "" });
    return onChange({ ...kept, [value]: true });
  };
  const set = (name, value) => onChange({ ...offer, [name]: value });
  return html`<fieldset><legend>${legend}</legend>
    ${messages(problems.filter((problem) => problem.rest.length === 0), []) && html`
      <p class="field-error">${messages(problems.filter((problem) => problem.rest.length === 0), [])}</p>`}
    <div class="row">
      <${SelectField} label="Which offer" value=${way || (optional ? "" : "key")} options=${ways}
        disabled=${disabled} onChange=${choose} />
      ${way === "key" && html`<${SelectField} label="Offer" value=${offer.key} disabled=${disabled}
        options=${[...(offers.some((item) => item.key === offer.key) ? [] : [[offer.key, offer.key || "(choose)"]]),
          ...offers.map((item) => [item.key, `${item.key}: ${item.name}`])]}
        error=${messages(problems, ["key"])} onChange=${(value) => set("key", value)} />`}
      ${way === "message_category" && html`<${TextField} label="After the message of scenario"
        value=${offer.message_category} disabled=${disabled} error=${messages(problems, ["message_category"])}
        onInput=${(value) => set("message_category", value)} />`}
      ${way && html`<${TextField} label="At least (% off)" type="number" min="1" max="100"
        value=${offer.min_discount ?? ""} disabled=${disabled} error=${messages(problems, ["min_discount"])}
        onInput=${(value) => set("min_discount", value)} />`}
      ${way === "cross_sell" && html`<${DurationField} label="Purchases within" optional=${false}
        value=${offer.purchased_within ?? "P30D"} disabled=${disabled}
        error=${messages(problems, ["purchased_within"])} onChange=${(value) => set("purchased_within", value)} />`}
    </div>
  </fieldset>`;
}

function JumpField({ label, value, steps, index, onChange, error, disabled }) {
  const following = index + 1 < steps.length ? steps[index + 1].id : END;
  const options = [["", following === END ? "End the journey (last step)" : `The next step (${following})`]];
  steps.forEach((step, at) => { if (at !== index) options.push([step.id, `Step ${at + 1}: ${step.id}`]); });
  options.push([END, "End the journey"]);
  if (value && !options.some(([option]) => option === value)) options.push([value, `${value} (no such step)`]);
  return html`<${SelectField} label=${label} value=${value ?? ""} options=${options} error=${error}
    disabled=${disabled} onChange=${(chosen) => onChange(chosen === "" ? null : chosen)} />`;
}

function ChannelsField({ channels, onChange, error, disabled }) {
  const ordered = [...channels, ...CHANNELS.map(([name]) => name).filter((name) => !channels.includes(name))];
  const label = Object.fromEntries(CHANNELS);
  const move = (name) => {
    const at = channels.indexOf(name);
    const next = [...channels];
    [next[at - 1], next[at]] = [next[at], next[at - 1]];
    onChange(next);
  };
  return html`<fieldset class=${error ? "invalid" : ""}><legend>Channels, in order of preference</legend>
    <p class="hint">The first one with consent and an address is used.</p>
    <ol class="channels">${ordered.map((name) => {
      const chosen = channels.includes(name);
      return html`<li key=${name}>
        <${CheckField} label=${label[name] || name} checked=${chosen}
          onChange=${(on) => onChange(on ? [...channels, name] : channels.filter((item) => item !== name))} />
        ${chosen && channels.indexOf(name) > 0 && !disabled && html`<button type="button" class="secondary small"
          onClick=${() => move(name)}>Prefer ${label[name] || name}</button>`}
      </li>`;
    })}</ol>
    ${error && html`<p class="field-error">${error}</p>`}
  </fieldset>`;
}

// ---- steps --------------------------------------------------------------------------------------

function newStep(type, steps) {
  let number = steps.length + 1;
  const taken = new Set(steps.map((step) => step.id));
  while (taken.has(`${type.replaceAll("_", "-")}-${number}`)) number += 1;
  const id = `${type.replaceAll("_", "-")}-${number}`;
  const base = { _uid: newUid(), id, type };
  switch (type) {
    case "send": return { ...base, channels: ["push"], template: "" };
    case "wait": return { ...base, for: "PT1H" };
    case "wait_for": return { ...base, event: "order.created", timeout: null };
    case "branch": return { ...base, if: { tag: "" } };
    case "tag": return { ...base, add: [], remove: [] };
    case "remove_from_list": return { ...base, list: "newsletter" };
    case "issue_coupon": return { ...base, offer: { cross_sell: true }, coupon: { valid_for: "P7D" } };
    case "loyalty_credit": return { ...base, amount: "", currency: "EUR" };
    case "webhook": return { ...base, url: "https://" };
    default: return base;
  }
}

function StepFields({ step, index, steps, set, field, problems, offers, variants, disabled }) {
  const jump = (name, label) => html`<${JumpField} label=${label} value=${step[name]} steps=${steps}
    index=${index} disabled=${disabled} error=${field(name)} onChange=${(value) => set(name, value)} />`;
  const coupon = (optional) => html`
    ${optional && html`<${CheckField} label="With a coupon" checked=${!!step.coupon}
      onChange=${(on) => set("coupon", on ? { valid_for: "P1D" } : null)} />`}
    ${step.coupon && html`<${DurationField} label="Coupon valid for" optional=${false}
      value=${step.coupon.valid_for} disabled=${disabled} error=${field("coupon")}
      onChange=${(value) => set("coupon", { valid_for: value })} />`}`;
  switch (step.type) {
    case "send": return html`
      <${ChannelsField} channels=${step.channels || []} disabled=${disabled} error=${field("channels")}
        onChange=${(value) => set("channels", value)} />
      <div class="row">
        <${TextField} label="Template" value=${step.template} list="scenario-templates" disabled=${disabled}
          hint="A template key saved for each channel." error=${field("template")}
          onInput=${(value) => set("template", value)} />
        <${TextField} label="Link" type="url" value=${step.link_url} disabled=${disabled}
          hint="Where the message leads; the offer's page when empty." error=${field("link_url")}
          onInput=${(value) => set("link_url", value)} />
        <${DurationField} label="Expires after" value=${step.expires_after} disabled=${disabled}
          hint="Not sent after this (a store greeting); empty for never." error=${field("expires_after")}
          onChange=${(value) => set("expires_after", value)} />
      </div>
      <${OfferEditor} legend="Offer" offer=${step.offer} optional offers=${offers} disabled=${disabled}
        problems=${within(problems, ["offer"])} onChange=${(value) => set("offer", value)} />
      <div class="row">${coupon(true)}
        <${CheckField} label="Transactional (a consent request: no offer, never capped)"
          checked=${!!step.transactional} onChange=${(on) => set("transactional", on)} /></div>
      ${variants.length > 0 && html`<fieldset><legend>What each A/B variant changes</legend>
        ${variants.map((variant) => {
          const override = (step.variants || {})[variant.key] || {};
          const setOverride = (name, value) => set("variants", { ...(step.variants || {}), [variant.key]: { ...override, [name]: value } });
          return html`<div class="stack" key=${variant.key}>
            <${TextField} label=${`Template for variant ${variant.key}`} value=${override.template}
              list="scenario-templates" hint="Empty: the step's own." disabled=${disabled}
              error=${field("variants", variant.key, "template")} onInput=${(value) => setOverride("template", value)} />
            <${OfferEditor} legend=${`Offer for variant ${variant.key}`} offer=${override.offer} optional
              offers=${offers} disabled=${disabled} problems=${within(problems, ["variants", variant.key, "offer"])}
              onChange=${(value) => setOverride("offer", value)} />
          </div>`;
        })}
      </fieldset>`}
      <div class="row">${jump("next", "Then")}</div>`;
    case "wait": return html`<div class="row">
      <${DurationField} label="Wait for" value=${step.for} optional=${false} disabled=${disabled}
        error=${field("for")} onChange=${(value) => set("for", value)} />
      ${jump("next", "Then")}</div>`;
    case "wait_for": return html`<div class="row">
        <${SelectField} label="Event" value=${step.event} options=${TRIGGER_KINDS} disabled=${disabled}
          error=${field("event")} onChange=${(value) => set("event", value)} />
        <${DurationField} label="Timeout" value=${step.timeout} optional=${false} disabled=${disabled}
          hint="How long to wait for it before taking the no path." error=${field("timeout")}
          onChange=${(value) => set("timeout", value)} />
      </div>
      <${FiltersField} legend="Only events where" filters=${step.where || []} disabled=${disabled}
        problems=${within(problems, ["where"])} onChange=${(value) => set("where", value)} />
      <div class="row">${jump("yes", "If it happens (yes)")}${jump("no", "If not in time (no)")}</div>`;
    case "branch": return html`
      <${ConditionEditor} condition=${step.if} disabled=${disabled} problems=${within(problems, ["if"])}
        onChange=${(value) => set("if", value)} />
      <div class="row">${jump("then", "If it holds (yes)")}${jump("else", "If not (no)")}</div>`;
    case "tag": return html`<div class="row">
      <${ListField} label="Add tags" value=${step.add} disabled=${disabled} hint="Separate with commas."
        error=${field("add")} onChange=${(value) => set("add", value)} />
      <${ListField} label="Remove tags" value=${step.remove} disabled=${disabled}
        error=${field("remove")} onChange=${(value) => set("remove", value)} />
      ${jump("next", "Then")}</div>`;
    case "remove_from_list": return html`<div class="row">
      <${TextField} label="List" value=${step.list} disabled=${disabled} error=${field("list")}
        hint="The newsletter also withdraws the email consent." onInput=${(value) => set("list", value)} />
      ${jump("next", "Then")}</div>`;
    case "issue_coupon": return html`
      <${OfferEditor} legend="Offer" offer=${step.offer} offers=${offers} disabled=${disabled}
        problems=${within(problems, ["offer"])} onChange=${(value) => set("offer", value)} />
      <div class="row">${coupon(false)}${jump("next", "Then")}</div>`;
    case "loyalty_credit": return html`<div class="row">
      <${TextField} label="Amount" inputmode="decimal" value=${step.amount} disabled=${disabled}
        error=${field("amount")} onInput=${(value) => set("amount", value)} />
      <${TextField} label="Currency" value=${step.currency} maxlength="3" disabled=${disabled}
        error=${field("currency")} onInput=${(value) => set("currency", value.toUpperCase())} />
      ${jump("next", "Then")}</div>`;
    case "webhook": return html`<div class="row">
      <${TextField} label="URL" type="url" value=${step.url} disabled=${disabled} error=${field("url")}
        hint="Receives the customer id, scenario, step and trigger, signed." onInput=${(value) => set("url", value)} />
      ${jump("next", "Then")}</div>`;
    default: return null;
  }
}

/** A step id: the jumps naming it follow when it is renamed (on leaving the field). */
function StepIdField({ step, onRename, onInput, error, disabled }) {
  const before = useRef(step.id);
  const invalid = step.id && !STEP_ID.test(step.id) ? "Lower-case letters, digits, - and _." : null;
  return html`<${TextField} label="Step id" value=${step.id} disabled=${disabled} error=${error || invalid}
    hint="How jumps and reports name it." onFocus=${() => { before.current = step.id; }}
    onBlur=${() => { if (before.current !== step.id) onRename(before.current, step.id); }}
    onInput=${onInput} />`;
}

function StepEditor({ step, index, steps, onChange, onMove, onRemove, onRename, problems, offers, variants, disabled }) {
  const headingId = useId("step");
  const set = (name, value) => onChange({ ...step, [name]: value });
  const field = (...path) => messages(problems, path);
  return html`<fieldset class=${`step-editor${problems.length ? " invalid" : ""}`} id=${`edit-${step._uid}`}
      tabindex="-1" aria-labelledby=${headingId}>
    <legend id=${headingId}>Step ${index + 1}: ${STEP_LABEL[step.type]} (${step.id})</legend>
    ${problems.length > 0 && html`<ul class="step-problems" role="list" aria-label=${`Problems of step ${index + 1}`}>
      ${problems.map((problem, at) => html`<li key=${at} class="field-error">
        ${problem.rest.length ? `${problem.rest.join(" › ")}: ` : ""}${problem.msg}</li>`)}</ul>`}
    <div class="row">
      <${StepIdField} step=${step} disabled=${disabled} error=${field("id")} onRename=${onRename}
        onInput=${(value) => set("id", value)} />
      ${!disabled && html`<div class="actions step-actions">
        <button type="button" class="secondary small" disabled=${index === 0}
          onClick=${() => onMove(-1)}>Move step ${index + 1} up</button>
        <button type="button" class="secondary small" disabled=${index === steps.length - 1}
          onClick=${() => onMove(1)}>Move step ${index + 1} down</button>
        <button type="button" class="danger small" onClick=${onRemove}>Remove step ${index + 1}</button>
      </div>`}
    </div>
    <${StepFields} step=${step} index=${index} steps=${steps} set=${set} field=${field} problems=${problems}
      offers=${offers} variants=${variants} disabled=${disabled} />
  </fieldset>`;
}

// ---- the whole form -------------------------------------------------------------------------------

function EntryFields({ entry, onChange, problems, disabled }) {
  const set = (name, value) => onChange({ ...entry, [name]: value });
  const error = (...path) => messages(problems, path);
  const changeEvent = (event) => onChange({
    ...entry, event, inactive_days: event === "inactivity" ? entry.inactive_days ?? "90" : null,
    date_field: event === "date" ? "birth_date" : null,
    spend_crosses: event === "spend.changed" ? entry.spend_crosses ?? "" : null,
  });
  return html`<fieldset><legend>Entry</legend>
    ${messages(problems.filter((problem) => problem.rest.length === 0), []) && html`
      <p class="field-error">${messages(problems.filter((problem) => problem.rest.length === 0), [])}</p>`}
    <div class="row">
      <${SelectField} label="Starts when the customer" value=${entry.event} options=${TRIGGER_KINDS}
        disabled=${disabled} error=${error("event")} onChange=${changeEvent} />
      ${entry.event === "inactivity" && html`<${TextField} label="Days without an order, visit or click"
        type="number" min="1" value=${entry.inactive_days ?? ""} disabled=${disabled}
        error=${error("inactive_days")} onInput=${(value) => set("inactive_days", value)} />`}
      ${entry.event === "date" && html`<${SelectField} label="Date field" value=${entry.date_field || "birth_date"}
        options=${[["birth_date", "Birthday"]]} disabled=${disabled} error=${error("date_field")}
        onChange=${(value) => set("date_field", value)} />`}
      ${entry.event === "spend.changed" && html`<${TextField} label="Spend crosses" inputmode="decimal"
        value=${entry.spend_crosses ?? ""} disabled=${disabled} error=${error("spend_crosses")}
        onInput=${(value) => set("spend_crosses", value)} />`}
      <${SelectField} label="Again for the same customer" value=${entry.reentry || "after_exit"}
        options=${REENTRY} disabled=${disabled} onChange=${(value) => set("reentry", value)} />
      <${DurationField} label="Cooldown" value=${entry.cooldown} disabled=${disabled} error=${error("cooldown")}
        hint="No new journey within this time of the last one's start; empty for none."
        onChange=${(value) => set("cooldown", value)} />
    </div>
    <${FiltersField} legend="Only triggers where" filters=${entry.where || []} disabled=${disabled}
      problems=${within(problems, ["where"])} onChange=${(value) => set("where", value)} />
  </fieldset>`;
}

function MeasureFields({ form, setField, problems, disabled }) {
  const error = (...path) => messages(problems, path);
  const setItem = (name, index, item) => setField(name, form[name].map((value, at) => (at === index ? item : value)));
  return html`<fieldset><legend>Holdout, A/B variants and caps</legend>
    <div class="row">
      <${TextField} label="Holdout (%)" type="number" min="0" max="90" value=${form.holdout_percent}
        disabled=${disabled} error=${error("holdout_percent")}
        hint="Customers kept out, to measure what the scenario changes." onInput=${(value) => setField("holdout_percent", value)} />
    </div>
    <h3>Variants</h3>
    ${form.variants.length === 0 && html`<p class="hint">No A/B test: every customer gets the same.</p>`}
    ${form.variants.map((variant, index) => html`<div class="row" key=${index}>
      <${TextField} label=${`Variant ${index + 1} key`} value=${variant.key} disabled=${disabled}
        error=${error("variants", index, "key")} onInput=${(value) => setItem("variants", index, { ...variant, key: value })} />
      <${TextField} label=${`Variant ${index + 1} weight`} type="number" min="1" value=${variant.weight ?? 1}
        disabled=${disabled} error=${error("variants", index, "weight")}
        onInput=${(value) => setItem("variants", index, { ...variant, weight: value })} />
      ${!disabled && html`<button type="button" class="danger small"
        onClick=${() => setField("variants", form.variants.filter((_, at) => at !== index))}>Remove variant ${index + 1}</button>`}
    </div>`)}
    ${!disabled && html`<button type="button" class="secondary small" onClick=${() => setField("variants",
      [...form.variants, { key: String.fromCharCode(97 + form.variants.length), weight: 1 }])}>Add a variant</button>`}
    <h3>Frequency caps</h3>
    ${form.caps.length === 0 && html`<p class="hint">No cap of this scenario's own.</p>`}
    ${form.caps.map((cap, index) => html`<div class="row" key=${index}>
      <${TextField} label=${`Cap ${index + 1}: at most`} type="number" min="1" value=${cap.max} disabled=${disabled}
        error=${error("caps", index, "max")} onInput=${(value) => setItem("caps", index, { ...cap, max: value })} />
      <${DurationField} label=${`Cap ${index + 1}: messages per`} value=${cap.per} optional=${false} disabled=${disabled}
        error=${error("caps", index, "per")} onChange=${(value) => setItem("caps", index, { ...cap, per: value })} />
      ${!disabled && html`<button type="button" class="danger small"
        onClick=${() => setField("caps", form.caps.filter((_, at) => at !== index))}>Remove cap ${index + 1}</button>`}
    </div>`)}
    ${!disabled && html`<button type="button" class="secondary small"
      onClick=${() => setField("caps", [...form.caps, { max: "1", per: "P1D" }])}>Add a cap</button>`}
  </fieldset>`;
}

function ProblemSummary({ problems, steps }) {
  if (!problems.length) return null;
  const where = (problem) => {
    if (problem.uid !== undefined) {
      const at = steps.findIndex((step) => step._uid === problem.uid);
      const name = at >= 0 ? `Step ${at + 1} (${steps[at].id})` : `Step ${problem.index + 1}`;
      return html`<a href=${`#edit-${problem.uid}`}>${name}</a>${problem.rest.length ? ` › ${problem.rest.join(" › ")}` : ""}`;
    }
    return problem.rest.join(" › ") || "scenario";
  };
  return html`<div class="notice error" role="alert">
    <p><strong>Scenario not saved:</strong> ${problems.length} problem${problems.length === 1 ? "" : "s"} to fix.</p>
    <ul>${problems.map((problem, index) => html`<li key=${index}>${where(problem)}: ${problem.msg}</li>`)}</ul>
  </div>`;
}

/** The editor; `onSaved(saved)` gets the API's answer. */
export function ScenarioEditor({ initial, isNew, paused = false, onSaved, onCancel }) {
  const [form, setForm] = useState(() => formOf(initial));
  const [error, setError] = useState(null);
  const [sentUids, setSentUids] = useState([]);
  const [busy, setBusy] = useState(false);
  const [adding, setAdding] = useState("send");
  const templates = useApi(tenantPath("/templates"));
  const offers = useApi(tenantPath("/offers?limit=500"));
  const problems = placed(error, sentUids);
  const general = problems.filter((problem) => problem.uid === undefined && !problem.loc?.[1]);
  const setField = (name, value) => setForm((previous) => ({ ...previous, [name]: value }));
  const setSteps = (change) => setForm((previous) => ({ ...previous, steps: change(previous.steps) }));

  function rename(from, to) {
    if (!from || !to || form.steps.filter((step) => step.id === to).length > 1) return;
    const names = ["next", "yes", "no", "then", "else"];
    setSteps((steps) => steps.map((step) => Object.fromEntries(Object.entries(step).map(([name, value]) => [
      name, names.includes(name) && value === from ? to : value]))));
  }

  function move(index, by) {
    setSteps((steps) => {
      const next = [...steps];
      [next[index], next[index + by]] = [next[index + by], next[index]];
      return next;
    });
  }

  function select(index) {
    const target = document.getElementById(`edit-${form.steps[index]._uid}`);
    target?.scrollIntoView({ block: "start" });
    target?.focus({ preventScroll: true });
  }

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSentUids(form.steps.map((step) => step._uid));
    try {
      const saved = await api("PUT", tenantPath(`/scenarios/${encodeURIComponent(form.key)}`), bodyOf(form));
      onSaved(saved);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const keyError = isNew && form.key && !/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(form.key)
    ? "Lower-case letters, digits, dot, dash and underscore." : null;
  const countAt = (index) => problems.filter((problem) => problem.uid === form.steps[index]?._uid).length;
  const templateKeys = [...new Set((templates.data || []).map((template) => template.key))];
  const at = (...path) => within(problems.filter((problem) => problem.uid === undefined), path);
  return html`<div class="scenario-editing">
    <form onSubmit=${save} class="stack scenario-form" aria-label="Scenario" novalidate>
      ${error && problems.length === 0 && html`<div class="notice error" role="alert">
        <p><strong>Scenario not saved:</strong> ${error.message}</p></div>`}
      <${ProblemSummary} problems=${problems} steps=${form.steps} />
      <datalist id="scenario-templates">${templateKeys.map((key) => html`<option value=${key} />`)}</datalist>
      <div class="row">
        <${TextField} label="Key" value=${form.key} required disabled=${!isNew}
          error=${keyError || messages(at("key"), [])} hint="How reports and the API name it."
          onInput=${(value) => setField("key", value)} />
        <${TextField} label="Name" value=${form.name} required error=${messages(at("name"), [])}
          onInput=${(value) => setField("name", value)} />
      </div>
      <${EntryFields} entry=${form.entry} problems=${at("entry")} onChange=${(value) => setField("entry", value)} />
      <fieldset><legend>Who may enter, and what ends a journey</legend>
        <${CheckField} label="Only customers who meet a condition" checked=${!!form.conditions}
          onChange=${(on) => setField("conditions", on ? { tag: "" } : null)} />
        ${form.conditions && html`<${ConditionEditor} condition=${form.conditions}
          problems=${at("conditions")} onChange=${(value) => setField("conditions", value)} />`}
        <details open=${form.exit_on.length > 0}><summary>Journeys end early when the customer… (${form.exit_on.length} chosen)</summary>
          <div class="checks">${TRIGGER_KINDS.map(([kind, label]) => html`<${CheckField} key=${kind}
            label=${label} checked=${form.exit_on.includes(kind)}
            onChange=${(on) => setField("exit_on", on ? [...form.exit_on, kind] : form.exit_on.filter((item) => item !== kind))} />`)}
          </div></details>
      </fieldset>
      <${MeasureFields} form=${form} setField=${setField} problems=${at()} />
      <h3>Steps</h3>
      ${form.steps.length === 0 && html`<p class="hint">No step yet: add the first one below.</p>`}
      ${form.steps.map((step, index) => html`<${StepEditor} key=${step._uid} step=${step} index=${index}
        steps=${form.steps} offers=${offers.data || []} variants=${form.variants}
        problems=${problems.filter((problem) => problem.uid === step._uid)}
        onChange=${(value) => setSteps((steps) => steps.map((item) => (item._uid === step._uid ? value : item)))}
        onMove=${(by) => move(index, by)} onRename=${rename}
        onRemove=${() => setSteps((steps) => steps.filter((item) => item._uid !== step._uid))} />`)}
      <div class="row add-step">
        <${SelectField} label="New step" value=${adding} options=${STEP_TYPES} onChange=${setAdding} />
        <button type="button" class="secondary" onClick=${() => setSteps((steps) => [...steps, newStep(adding, steps)])}>
          Add step</button>
      </div>
      ${general.length > 0 && html`<p class="field-error">${general.map((problem) => problem.msg).join("; ")}</p>`}
      ${paused && html`<p class="hint">This scenario is paused: saving it switches it on again.</p>`}
      <div class="actions">
        <button type="submit" disabled=${busy || !!keyError}>${busy ? "Saving…" : "Save scenario"}</button>
        <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
      </div>
      <details class="draft-dry-run"><summary>Dry run this draft before saving it</summary>
        <${DryRun} scenarioKey=${form.key} draft=${() => bodyOf(form)} />
      </details>
    </form>
    <aside class="flow-preview" aria-label="Flow preview">
      <h3>Flow</h3>
      <p class="hint">Updates as you edit; pick a step to go to its fields.</p>
      <${Flow} spec=${form} prefix="preview" label="Flow of the scenario being edited"
        problems=${countAt} onSelect=${select} />
    </aside>
  </div>`;
}
