// A scenario as a flow: its entry, then each step with where it leads (a wait for an
// event and a branch split into their yes and no paths), down to where journeys end.
// Drawn with HTML lists and CSS, so the same markup is what a screen reader reads, in
// order: the entry, the steps, each branch's label and its path.
import { html } from "console/lib.js";

/** Every entry point a scenario can name (cloud.triggers.TriggerKind), with its label. */
export const TRIGGER_KINDS = [
  ["presence.enter", "Seen entering a store"],
  ["presence.dwell", "Staying in a store"],
  ["presence.exit", "Leaving a store"],
  ["geofence.enter", "Entering a geofence"],
  ["geofence.dwell", "Staying in a geofence"],
  ["geofence.exit", "Leaving a geofence"],
  ["customer.signup", "Signed up"],
  ["newsletter.signup", "Subscribed to the newsletter"],
  ["newsletter.confirmed", "Confirmed the newsletter"],
  ["cart.abandoned", "Abandoned a cart"],
  ["order.created", "Ordered"],
  ["order.cancelled", "An order was cancelled"],
  ["order.refunded", "An order was refunded"],
  ["coupon.redeemed", "Redeemed a coupon"],
  ["message.opened", "Opened a message"],
  ["message.clicked", "Clicked a message"],
  ["message.converted", "Bought after a message"],
  ["push.subscribed", "Accepted app push"],
  ["web_push.subscribed", "Accepted web push"],
  ["app.opened", "Opened the app"],
  ["date", "A date came round (birthday)"],
  ["inactivity", "Inactive for a number of days"],
  ["spend.changed", "Lifetime spend crossed an amount"],
];
const TRIGGER_LABEL = Object.fromEntries(TRIGGER_KINDS);

/** The delivery channels, in the order the API registers them. */
export const CHANNELS = [["push", "App push"], ["web_push", "Web push"], ["email", "Email"], ["sms", "SMS"]];
const CHANNEL_LABEL = Object.fromEntries(CHANNELS);

/** Step types the spec knows, with what the editor calls them. */
export const STEP_TYPES = [
  ["send", "Send a message"],
  ["wait", "Wait"],
  ["wait_for", "Wait for an event (yes / no)"],
  ["branch", "Branch on a condition (yes / no)"],
  ["tag", "Tag the customer"],
  ["remove_from_list", "Remove from a list"],
  ["issue_coupon", "Issue a coupon"],
  ["loyalty_credit", "Add loyalty credit"],
  ["webhook", "Call the shop (webhook)"],
];
export const STEP_LABEL = Object.fromEntries(STEP_TYPES);
export const END = "end";

// ---- durations ------------------------------------------------------------------------

const UNIT_SECONDS = { days: 86400, hours: 3600, minutes: 60, seconds: 1 };
const ISO_DURATION = /^P(?:(\d+(?:\.\d+)?)W)?(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** Seconds in a duration as the API writes it ("PT15M", "P1DT12H") or takes it (seconds). */
export function durationSeconds(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value;
  const match = ISO_DURATION.exec(String(value));
  if (!match) return null;
  const [weeks, days, hours, minutes, seconds] = match.slice(1).map((part) => Number(part || 0));
  return (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds;
}

/** [amount, unit] in the largest unit that holds the duration whole. */
export function durationParts(value) {
  const seconds = durationSeconds(value);
  if (seconds === null) return ["", "minutes"];
  const unit = Object.keys(UNIT_SECONDS).find((name) => seconds % UNIT_SECONDS[name] === 0 && seconds >= UNIT_SECONDS[name]) || "seconds";
  return [String(seconds / UNIT_SECONDS[unit]), unit];
}

/** The ISO 8601 duration the API takes for an amount of a unit; null when empty. */
export function isoDuration(amount, unit) {
  if (amount === "" || amount === null || amount === undefined) return null;
  const number = Number(amount);
  if (!Number.isFinite(number)) return String(amount); // the API names what is wrong
  if (unit === "days") return `P${number}D`;
  const letter = { hours: "H", minutes: "M", seconds: "S" }[unit];
  return `PT${number}${letter}`;
}

/** "15 min", "1 day", "1 day 12 h". */
export function describeDuration(value) {
  let seconds = durationSeconds(value);
  if (seconds === null) return "—";
  const parts = [];
  for (const [name, size, short] of [["days", 86400, "day"], ["hours", 3600, "h"], ["minutes", 60, "min"], ["seconds", 1, "s"]]) {
    const whole = Math.floor(seconds / size);
    if (whole > 0) {
      parts.push(name === "days" ? `${whole} ${short}${whole === 1 ? "" : "s"}` : `${whole} ${short}`);
      seconds -= whole * size;
    }
  }
  return parts.join(" ") || "0 s";
}

// ---- what a step or a condition says ------------------------------------------------------

const OPS = { eq: "=", ne: "≠", in: "in", gt: ">", gte: "≥", lt: "<", lte: "≤", exists: "exists" };

function describeValue(value) {
  if (Array.isArray(value)) return value.map(describeValue).join(", ");
  return typeof value === "string" ? value : JSON.stringify(value);
}

function describeTest(subject, op = "eq", value) {
  if (op === "exists") return value === false ? `${subject} is empty` : `${subject} is set`;
  return `${subject} ${OPS[op] || op} ${describeValue(value)}`;
}

/** A condition in words: "has tag vip and bought washers within 30 days". */
export function describeCondition(condition) {
  if (!condition || typeof condition !== "object") return "—";
  if (condition.all) return condition.all.map(describeCondition).join(" and ");
  if (condition.any) return `(${condition.any.map(describeCondition).join(" or ")})`;
  if (condition.not) return `not (${describeCondition(condition.not)})`;
  if ("tag" in condition) return `has tag ${condition.tag}`;
  if ("profile" in condition) return describeTest(`profile ${condition.profile}`, condition.op, condition.value);
  if ("consent" in condition) return `consents to ${CHANNEL_LABEL[condition.consent] || condition.consent}`;
  if (condition.purchased) {
    const { category, sku, within } = condition.purchased;
    const what = [category && `category ${category}`, sku && `SKU ${sku}`].filter(Boolean).join(", ") || "anything";
    return `bought ${what}${within ? ` within ${describeDuration(within)}` : ""}`;
  }
  if (condition.message) {
    const query = condition.message;
    const flags = ["opened", "clicked", "converted"]
      .filter((flag) => query[flag] !== undefined && query[flag] !== null)
      .map((flag) => (query[flag] ? flag : `not ${flag}`));
    const of = [query.scenario && `of ${query.scenario}`, query.step && `step ${query.step}`,
      query.channel && `by ${CHANNEL_LABEL[query.channel] || query.channel}`].filter(Boolean).join(" ");
    return `a message ${of}${flags.length ? ` ${flags.join(", ")}` : " sent"}${query.within ? ` within ${describeDuration(query.within)}` : ""}`;
  }
  if (condition.spend) {
    const { op, value, currency } = condition.spend;
    return describeTest(`lifetime spend${currency ? ` in ${currency}` : ""}`, op || "gte", value);
  }
  if (condition.since) {
    const { event, more_than: more, less_than: less } = condition.since;
    return [more && `last ${event} more than ${describeDuration(more)} ago`,
      less && `last ${event} less than ${describeDuration(less)} ago`].filter(Boolean).join(" and ");
  }
  if (condition.trigger) return describeTest(`trigger ${condition.trigger.attribute}`, condition.trigger.op, condition.trigger.value);
  return "—";
}

function describeFilters(where) {
  return (where || []).map((filter) => describeTest(filter.attribute, filter.op, filter.value)).join(" and ");
}

export function describeOffer(offer) {
  if (!offer) return null;
  const way = offer.key ? `offer ${offer.key}`
    : offer.cross_sell ? "a cross-sell offer"
      : offer.trigger_category ? "an offer on the cart's category"
        : offer.message_category ? `a bigger offer after ${offer.message_category}` : "an offer";
  return `${way}${offer.min_discount ? ` (at least ${offer.min_discount} %)` : ""}`;
}

export function describeEntry(entry) {
  if (!entry) return "—";
  const parts = [TRIGGER_LABEL[entry.event] || entry.event];
  if (entry.inactive_days) parts.push(`${entry.inactive_days} days`);
  if (entry.date_field) parts.push(entry.date_field.replace("_", " "));
  if (entry.spend_crosses) parts.push(`crossing ${entry.spend_crosses}`);
  const where = describeFilters(entry.where);
  if (where) parts.push(`where ${where}`);
  return parts.join(", ");
}

/** What one step does, in a line. */
export function describeStep(step) {
  switch (step.type) {
    case "send": {
      const channels = (step.channels || []).map((channel) => CHANNEL_LABEL[channel] || channel).join(" or ");
      const parts = [`${channels || "—"} with template ${step.template || "—"}`];
      const offer = describeOffer(step.offer);
      if (offer) parts.push(offer);
      if (step.coupon) parts.push(`coupon valid ${describeDuration(step.coupon.valid_for)}`);
      const variants = Object.keys(step.variants || {});
      if (variants.length) parts.push(`variant ${variants.join(", ")} differs`);
      if (step.transactional) parts.push("transactional");
      return parts.join(" · ");
    }
    case "wait": return `Wait ${describeDuration(step.for)}`;
    case "wait_for": {
      const where = describeFilters(step.where);
      return `Up to ${describeDuration(step.timeout)} for “${TRIGGER_LABEL[step.event] || step.event}”${where ? ` where ${where}` : ""}`;
    }
    case "branch": return `If ${describeCondition(step.if)}`;
    case "tag": return [step.add?.length && `add ${step.add.join(", ")}`, step.remove?.length && `remove ${step.remove.join(", ")}`].filter(Boolean).join("; ") || "no tags";
    case "remove_from_list": return `Take off list ${step.list || "—"}`;
    case "issue_coupon": return `${describeOffer(step.offer) || "—"}, valid ${describeDuration(step.coupon?.valid_for)}`;
    case "loyalty_credit": return `${step.amount || "—"} ${step.currency || ""}`;
    case "webhook": return `POST to ${step.url || "—"}`;
    default: return step.type;
  }
}

// ---- the graph ----------------------------------------------------------------------------

/** Where a step leads, as [label, target id]: a missing jump goes to the step after it
 * (or ends the journey after the last step), as the engine does. */
export function exits(steps, index) {
  const step = steps[index];
  const following = index + 1 < steps.length ? steps[index + 1].id : END;
  const to = (target) => (target === null || target === undefined || target === "" ? following : target);
  if (step.type === "wait_for") {
    return [["yes", `Yes: ${TRIGGER_LABEL[step.event] || step.event || "the event"}`, to(step.yes)],
      ["no", `No: not within ${describeDuration(step.timeout)}`, to(step.no)]];
  }
  if (step.type === "branch") return [["then", "Yes: it holds", to(step.then)], ["else", "No: it does not", to(step.else)]];
  return [["next", null, to(step.next)]];
}

/** The flow as a tree to draw: each step once, at the first path that reaches it; later
 * paths to it say "continues at" that step (a merge or a loop), so nothing repeats. */
export function flowTree(steps) {
  const byId = new Map(steps.map((step, index) => [step.id, index]));
  const placed = new Set();
  function path(target) {
    const nodes = [];
    let current = target;
    while (true) {
      if (current === END) { nodes.push({ kind: "end" }); return nodes; }
      const index = byId.get(current);
      if (index === undefined) { nodes.push({ kind: "missing", id: current }); return nodes; }
      if (placed.has(current)) { nodes.push({ kind: "goto", id: current, index }); return nodes; }
      placed.add(current);
      const ways = exits(steps, index);
      if (ways.length === 1) {
        nodes.push({ kind: "step", index, step: steps[index] });
        current = ways[0][2];
      } else {
        const branches = ways.map(([field, label, to]) => ({ field, label, nodes: path(to) }));
        nodes.push({ kind: "step", index, step: steps[index], branches });
        return nodes;
      }
    }
  }
  const main = steps.length ? path(steps[0].id) : [{ kind: "end" }];
  const unreached = steps.map((step, index) => ({ step, index })).filter(({ step }) => !placed.has(step.id));
  return { main, unreached };
}

// ---- drawing ------------------------------------------------------------------------------

export function stepAnchor(prefix, index) {
  return `${prefix}-step-${index}`;
}

function StepCard({ node, prefix, problems, onSelect }) {
  const { step, index } = node;
  const count = problems ? problems(index) : 0;
  const body = html`${onSelect && html`<span class="visually-hidden">Edit step </span>`}
    <span class="flow-kind">${index + 1}. ${STEP_LABEL[step.type] || step.type}</span>
    <span class="flow-id"><code>${step.id || "(no id)"}</code></span>
    <span class="flow-what">${describeStep(step)}</span>
    ${count > 0 && html`<span class="flow-problem">${count} problem${count === 1 ? "" : "s"}</span>`}`;
  const className = `flow-card flow-${step.type}${count ? " flow-invalid" : ""}`;
  if (onSelect) {
    return html`<button type="button" class=${className} id=${stepAnchor(prefix, index)}
      onClick=${() => onSelect(index)}>${body}</button>`;
  }
  return html`<div class=${className} id=${stepAnchor(prefix, index)}>${body}</div>`;
}

function Nodes({ nodes, prefix, problems, onSelect }) {
  return html`<ol class="flow-path">${nodes.map((node, position) => html`
    <li class="flow-node" key=${position}>
      ${node.kind === "end" && html`<div class="flow-end">End of journey</div>`}
      ${node.kind === "missing" && html`<div class="flow-end flow-invalid">Jumps to unknown step <code>${node.id}</code></div>`}
      ${node.kind === "goto" && html`<a class="flow-goto" href=${`#${stepAnchor(prefix, node.index)}`}>
        Continues at step ${node.index + 1} (<code>${node.id}</code>)</a>`}
      ${node.kind === "step" && html`<${StepCard} node=${node} prefix=${prefix} problems=${problems} onSelect=${onSelect} />`}
      ${node.branches && html`<ul class="flow-branches">${node.branches.map((branch) => html`
        <li class=${`flow-way flow-way-${branch.field}`} key=${branch.field}>
          <span class="flow-label">${branch.label}</span>
          <${Nodes} nodes=${branch.nodes} prefix=${prefix} problems=${problems} onSelect=${onSelect} />
        </li>`)}</ul>`}
    </li>`)}</ol>`;
}

/** The scenario drawn from its entry to its ends. `problems(index)` counts a step's
 * problems (shown on its card); `onSelect(index)` makes cards buttons that pick a step. */
export function Flow({ spec, label = "Scenario flow", prefix = "flow", problems, onSelect }) {
  const steps = spec.steps || [];
  const { main, unreached } = flowTree(steps);
  return html`<figure class="flow" aria-label=${label}>
    <div class="flow-scroll">
      <div class="flow-entry"><span class="flow-kind">Entry</span>
        <span class="flow-what">${describeEntry(spec.entry)}</span>
        ${spec.conditions && html`<span class="flow-what">only if ${describeCondition(spec.conditions)}</span>`}
        ${spec.holdout_percent > 0 && html`<span class="flow-what">${spec.holdout_percent} % held out</span>`}
        ${spec.variants?.length > 0 && html`<span class="flow-what">A/B: ${spec.variants.map((v) => `${v.key} ×${v.weight ?? 1}`).join(", ")}</span>`}
      </div>
      <${Nodes} nodes=${main} prefix=${prefix} problems=${problems} onSelect=${onSelect} />
    </div>
    ${unreached.length > 0 && html`<div class="flow-unreached">
      <p>Not reached from the entry:</p>
      <ul>${unreached.map(({ step, index }) => html`<li key=${index}>
        <${StepCard} node=${{ step, index }} prefix=${prefix} problems=${problems} onSelect=${onSelect} /></li>`)}</ul>
    </div>`}
    ${spec.exit_on?.length > 0 && html`<figcaption>${`Journeys end early when the customer: ${
      spec.exit_on.map((kind) => TRIGGER_LABEL[kind] || kind).join(", ").toLowerCase()}.`}</figcaption>`}
  </figure>`;
}
