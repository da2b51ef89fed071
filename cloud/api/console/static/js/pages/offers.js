// Offers, their coupons, and the complement rules (what is cross-sold after what).
// Everything goes through the API: PUT /offers/{key} saves the whole offer, DELETE
// deactivates it, PUT /complements replaces the rule list.
import {
  ConfirmButton, Dialog, ErrorNotice, Loading, Notice, ReadOnlyNote, Section,
  Table, TextField, CheckField, api, can, count, html, mount, problemsAt, tenantPath, useApi,
  useState, when,
} from "console/lib.js";

const WRITE = "offers.write";
const EMPTY_OFFER = {
  key: "", name: "", discount_percent: "10", sku: "", category: "", product_name: "",
  product_url: "https://", image_url: "https://", price: "", currency: "EUR",
  valid_from: "", valid_until: "", coupon_limit: "", budget_limit: "", active: true,
  reissue_on_cancel: false,
};

/** The form's strings from an offer as the API returns it. */
function formOf(offer) {
  const local = (value) => (value ? value.slice(0, 16) : "");
  return {
    ...EMPTY_OFFER, ...offer,
    discount_percent: String(offer.discount_percent), sku: offer.sku ?? "",
    category: offer.category ?? "", price: String(offer.price),
    valid_from: local(offer.valid_from), valid_until: local(offer.valid_until),
    coupon_limit: offer.coupon_limit === null ? "" : String(offer.coupon_limit),
    budget_limit: offer.budget_limit === null ? "" : String(offer.budget_limit),
  };
}

/** The API's body from the form: empty optional fields are left out. */
function bodyOf(form) {
  const optional = (value) => (value === "" ? undefined : value);
  const instant = (value) => (value ? new Date(value).toISOString() : undefined);
  return {
    name: form.name, discount_percent: Number(form.discount_percent),
    sku: optional(form.sku), category: optional(form.category),
    product_name: form.product_name, product_url: form.product_url, image_url: form.image_url,
    price: form.price, currency: form.currency,
    valid_from: instant(form.valid_from), valid_until: instant(form.valid_until),
    coupon_limit: form.coupon_limit === "" ? undefined : Number(form.coupon_limit),
    budget_limit: optional(form.budget_limit), active: form.active,
    reissue_on_cancel: form.reissue_on_cancel,
  };
}

function OfferForm({ initial, isNew, onSaved, onCancel }) {
  const [form, setForm] = useState(initial);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (value) => setForm((previous) => ({ ...previous, [name]: value }));
  const fieldError = (name) => problemsAt(error, ["body", name]).map((p) => p.msg).join("; ") || null;

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const saved = await api("PUT", tenantPath(`/offers/${encodeURIComponent(form.key)}`), bodyOf(form));
      onSaved(saved);
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  const keyError = isNew && form.key && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(form.key)
    ? "Letters, digits, dot, dash and underscore; no spaces." : null;
  return html`<form onSubmit=${save} class="stack" aria-label="Offer">
    <${ErrorNotice} error=${error} title="Offer not saved" />
    <div class="row">
      <${TextField} label="Key" value=${form.key} onInput=${set("key")} required
        disabled=${!isNew} error=${keyError} hint="How scenarios and the API name it." />
      <${TextField} label="Name" value=${form.name} onInput=${set("name")} required
        error=${fieldError("name")} />
      <${TextField} label="Discount (%)" type="number" min="1" max="100"
        value=${form.discount_percent} onInput=${set("discount_percent")}
        error=${fieldError("discount_percent")} />
    </div>
    <div class="row">
      <${TextField} label="Product SKU" value=${form.sku} onInput=${set("sku")}
        error=${fieldError("sku")} hint="The product on offer; or leave empty and give a category." />
      <${TextField} label="Category" value=${form.category} onInput=${set("category")}
        error=${fieldError("category")} hint="Cross-selling matches on it." />
      <${TextField} label="Product name" value=${form.product_name}
        onInput=${set("product_name")} required error=${fieldError("product_name")} />
    </div>
    <div class="row">
      <${TextField} label="Product page" type="url" value=${form.product_url}
        onInput=${set("product_url")} error=${fieldError("product_url")} />
      <${TextField} label="Image" type="url" value=${form.image_url}
        onInput=${set("image_url")} error=${fieldError("image_url")} />
    </div>
    <div class="row">
      <${TextField} label="Price" inputmode="decimal" value=${form.price}
        onInput=${set("price")} required error=${fieldError("price")} />
      <${TextField} label="Currency" value=${form.currency} onInput=${set("currency")}
        maxlength="3" error=${fieldError("currency")} />
      <${TextField} label="Valid from" type="datetime-local" value=${form.valid_from}
        onInput=${set("valid_from")} error=${fieldError("valid_from")} />
      <${TextField} label="Valid until" type="datetime-local" value=${form.valid_until}
        onInput=${set("valid_until")} error=${fieldError("valid_until")} />
    </div>
    <div class="row">
      <${TextField} label="Coupon limit" type="number" min="0" value=${form.coupon_limit}
        onInput=${set("coupon_limit")} error=${fieldError("coupon_limit")}
        hint="How many coupons may be issued; empty for no limit." />
      <${TextField} label="Budget limit" inputmode="decimal" value=${form.budget_limit}
        onInput=${set("budget_limit")} error=${fieldError("budget_limit")}
        hint="Total discount the coupons may promise; empty for no limit." />
      <${CheckField} label="Active" checked=${form.active} onChange=${set("active")} />
      <${CheckField} label="Give coupons back when the order is cancelled"
        checked=${form.reissue_on_cancel} onChange=${set("reissue_on_cancel")}
        hint="A coupon spent on an order the shop cancels can be used again, until it expires." />
    </div>
    ${problemsAt(error, ["body"]).filter((p) => p.loc.length === 1).map((p) => html`
      <p class="field-error">${p.msg}</p>`)}
    <div class="actions">
      <button type="submit" disabled=${busy || keyError}>${busy ? "Saving…" : "Save offer"}</button>
      <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

function Coupons({ offer }) {
  const coupons = useApi(can("customers.read")
    ? tenantPath(`/offers/${encodeURIComponent(offer.key)}/coupons?limit=20`) : null);
  if (!can("customers.read")) {
    return html`<p>${count(offer.coupons_issued)} coupons issued. Your role does not see whose.</p>`;
  }
  return html`<${Loading} state=${coupons}>${(data) => html`
    <div class="kpis">
      ${[["Issued", data.issued], ["Active", data.active], ["Redeemed", data.redeemed],
         ["Expired", data.expired]].map(([label, value]) => html`
        <div class="kpi"><div class="value">${count(value)}</div><div class="label">${label}</div></div>`)}
    </div>
    <${Table} caption="Newest coupons" rowKey=${(c) => c.code} columns=${[
      ["Code", (c) => html`<code>${c.code}</code>`],
      ["Customer", (c) => c.customer_id],
      ["Issued", (c) => when(c.issued_at)],
      ["Expires", (c) => when(c.expires_at)],
      ["State", (c) => html`<span class=${`status ${c.status === "active" ? "ok" : "idle"}`}>${c.status}</span>`],
      ["Order", (c) => c.order_id ?? "—"],
    ]} rows=${data.newest} empty="No coupon issued yet." />`}
  <//>`;
}

function Offers() {
  const offers = useApi(tenantPath("/offers?limit=500"));
  const [editing, setEditing] = useState(null);
  const [showing, setShowing] = useState(null);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);

  async function toggle(offer) {
    setError(null);
    try {
      if (offer.active) {
        await api("DELETE", tenantPath(`/offers/${encodeURIComponent(offer.key)}`));
        setMessage(`Offer ${offer.key} deactivated: no new coupons; issued ones stay valid.`);
      } else {
        await api("PUT", tenantPath(`/offers/${encodeURIComponent(offer.key)}`),
          bodyOf({ ...formOf(offer), active: true }));
        setMessage(`Offer ${offer.key} is active again.`);
      }
      offers.reload();
    } catch (failure) {
      setError(failure);
    }
  }

  const limit = (used, max) => (max === null ? count(used) : `${count(used)} / ${count(max)}`);
  return html`<${Section} title="Offers" actions=${can(WRITE) && html`
      <button type="button" onClick=${() => setEditing({ isNew: true, offer: EMPTY_OFFER })}>
        New offer</button>`}>
    <${ReadOnlyNote} permission=${WRITE} />
    ${message && html`<${Notice} kind="success"><p>${message}</p><//>`}
    <${ErrorNotice} error=${error} />
    <${Loading} state=${offers}>${(rows) => html`<${Table} caption="The tenant's offers"
      rowKey=${(offer) => offer.key} rows=${rows} empty="No offers yet." columns=${[
        ["Key", (offer) => html`<code>${offer.key}</code>`],
        ["Name", (offer) => offer.name],
        ["Discount", (offer) => `${offer.discount_percent} %`],
        ["On", (offer) => [offer.sku && `SKU ${offer.sku}`, offer.category && `category ${offer.category}`].filter(Boolean).join(", ")],
        ["Valid", (offer) => `${when(offer.valid_from)} – ${offer.valid_until ? when(offer.valid_until) : "open"}`],
        ["Coupons", (offer) => limit(offer.coupons_issued, offer.coupon_limit)],
        ["Budget", (offer) => `${limit(offer.budget_used, offer.budget_limit)} ${offer.currency}`],
        ["State", (offer) => html`<span class=${`status ${offer.active ? "ok" : "idle"}`}>
          ${offer.active ? "active" : "inactive"}</span>`],
        ["", (offer) => html`<div class="actions">
          <button type="button" class="secondary small" onClick=${() => setShowing(offer)}
            aria-label=${`Coupons of ${offer.key}`}>Coupons</button>
          ${can(WRITE) && html`
            <button type="button" class="secondary small" aria-label=${`Edit ${offer.key}`}
              onClick=${() => setEditing({ isNew: false, offer: formOf(offer) })}>Edit</button>
            ${offer.active
              ? html`<${ConfirmButton} label="Deactivate" confirm=${`Deactivate ${offer.key}`}
                  onConfirm=${() => toggle(offer)} />`
              : html`<button type="button" class="secondary small" onClick=${() => toggle(offer)}>
                  Reactivate</button>`}`}
        </div>`],
      ]} />`}<//>
    <${Dialog} title=${editing?.isNew ? "New offer" : `Edit offer ${editing?.offer.key ?? ""}`}
      open=${editing !== null} onClose=${() => setEditing(null)}>
      ${editing && html`<${OfferForm} initial=${editing.offer} isNew=${editing.isNew}
        onCancel=${() => setEditing(null)}
        onSaved=${(saved) => { setEditing(null); setMessage(`Offer ${saved.key} saved.`); offers.reload(); }} />`}
    <//>
    <${Dialog} title=${`Coupons of ${showing?.key ?? ""}`} open=${showing !== null}
      onClose=${() => setShowing(null)}>
      ${showing && html`<${Coupons} offer=${showing} />
        <div class="actions"><button type="button" class="secondary" onClick=${() => setShowing(null)}>Close</button></div>`}
    <//>
  <//>`;
}

function Complements() {
  const saved = useApi(tenantPath("/complements"));
  return html`<${Section} title="Complementary categories">
    <p class="hint">Who bought from the first category is offered the second: washers, then
      dryers. Lower priority comes first.</p>
    <${ReadOnlyNote} permission=${WRITE} />
    <${Loading} state=${saved}>${(rules) => html`<${RuleEditor} initial=${rules}
      onSaved=${saved.reload} />`}<//>
  <//>`;
}

function RuleEditor({ initial, onSaved }) {
  const [rules, setRules] = useState(initial.map((rule) => ({ ...rule, priority: String(rule.priority) })));
  const [error, setError] = useState(null);
  const [done, setDone] = useState(false);
  const writable = can(WRITE);
  const change = (index, name) => (value) => {
    setDone(false);
    setRules((previous) => previous.map((rule, at) => (at === index ? { ...rule, [name]: value } : rule)));
  };

  async function save(event) {
    event.preventDefault();
    setError(null);
    try {
      await api("PUT", tenantPath("/complements"), rules.map((rule) => ({
        from_category: rule.from_category, to_category: rule.to_category,
        priority: Number(rule.priority || 100),
      })));
      setDone(true);
      onSaved();
    } catch (failure) {
      setError(failure);
    }
  }

  const rowError = (index) => problemsAt(error, ["body", index]).map((p) => p.msg).join("; ") || null;
  return html`<form onSubmit=${save} class="stack" aria-label="Complement rules">
    ${done && html`<${Notice} kind="success"><p>Complement rules saved.</p><//>`}
    <${ErrorNotice} error=${error} title="Rules not saved" />
    ${rules.length === 0 && html`<p class="empty">No rules yet.</p>`}
    ${rules.map((rule, index) => html`<fieldset class="row" key=${index}>
      <legend>Rule ${index + 1}</legend>
      <${TextField} label="Bought from" value=${rule.from_category}
        onInput=${change(index, "from_category")} disabled=${!writable} error=${rowError(index)} />
      <${TextField} label="Offer from" value=${rule.to_category}
        onInput=${change(index, "to_category")} disabled=${!writable} />
      <${TextField} label="Priority" type="number" min="0" value=${rule.priority}
        onInput=${change(index, "priority")} disabled=${!writable} />
      ${writable && html`<button type="button" class="danger small"
        onClick=${() => setRules(rules.filter((_, at) => at !== index))}>Remove rule ${index + 1}</button>`}
    </fieldset>`)}
    ${writable && html`<div class="actions">
      <button type="button" class="secondary"
        onClick=${() => setRules([...rules, { from_category: "", to_category: "", priority: "100" }])}>
        Add a rule</button>
      <button type="submit">Save rules</button>
    </div>`}
  </form>`;
}

function Page() {
  return html`<${Offers} /><${Complements} />`;
}

mount(Page);
