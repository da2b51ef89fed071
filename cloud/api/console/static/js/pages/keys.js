// The tenant's API keys: the shop's back office (admin) and its app (app). A new key is
// shown once, here, and never again (only its hash is kept); revoking is immediate.
import {
  ConfirmButton, ErrorNotice, Loading, Notice, Section, SelectField, Table, TextField, api,
  html, mount, tenantPath, useApi, useState, when,
} from "console/lib.js";

const ROLES = [["app", "app: the shop's app (sign-up, consent, devices, coupons)"],
               ["admin", "admin: the shop's back office (everything of this tenant)"]];

function NewKey({ onMade }) {
  const [role, setRole] = useState("app");
  const [name, setName] = useState("");
  const [error, setError] = useState(null);
  const [made, setMade] = useState(null);

  async function create(event) {
    event.preventDefault();
    setError(null);
    try {
      const key = await api("POST", tenantPath("/api-keys"), { role, name });
      setMade(key);
      setName("");
      onMade();
    } catch (failure) {
      setError(failure);
    }
  }

  return html`<form onSubmit=${create} class="stack" aria-label="New API key">
    <${ErrorNotice} error=${error} title="Key not made" />
    ${made && html`<${Notice} kind="success">
      <p>Key <code>${made.key_id}</code> made. Copy it now: it is not shown again.</p>
      <p><label for="new-key">The key</label>
        <input id="new-key" class="mono" readonly value=${made.key} size="70"
          onFocus=${(event) => event.currentTarget.select()} /></p>
    <//>`}
    <div class="row">
      <${SelectField} label="Role" value=${role} onChange=${setRole} options=${ROLES} />
      <${TextField} label="What it is for" value=${name} onInput=${setName}
        hint="Shown in this list, e.g. 'web shop' or 'Android app'." maxlength="64" />
      <button type="submit">Make a key</button>
    </div>
  </form>`;
}

function Keys() {
  const keys = useApi(tenantPath("/api-keys"));
  const [error, setError] = useState(null);

  async function revoke(key) {
    setError(null);
    try {
      await api("DELETE", tenantPath(`/api-keys/${encodeURIComponent(key.key_id)}`));
      keys.reload();
    } catch (failure) {
      setError(failure);
    }
  }

  return html`
    <${Section} title="Make a key"><${NewKey} onMade=${keys.reload} /><//>
    <${Section} title="Keys">
      <${ErrorNotice} error=${error} title="Not revoked" />
      <${Loading} state=${keys}>${(rows) => html`<${Table} caption="Keys of this tenant"
        rowKey=${(key) => key.key_id} rows=${rows} empty="No keys yet." columns=${[
          ["Key id", (key) => html`<code>${key.key_id}</code>`],
          ["Role", (key) => key.role],
          ["For", (key) => key.name || "—"],
          ["Made", (key) => html`${when(key.created_at)}<br /><span class="hint">by ${key.created_by}</span>`],
          ["Last used", (key) => when(key.last_used_at)],
          ["State", (key) => key.revoked_at
            ? html`<span class="status bad">revoked ${when(key.revoked_at)}</span>`
            : html`<span class="status ok">active</span>`],
          ["", (key) => !key.revoked_at && html`<${ConfirmButton} label=${`Revoke ${key.key_id}`}
            confirm=${`Really revoke ${key.key_id}`} onConfirm=${() => revoke(key)} />`],
        ]} />`}<//>
    <//>`;
}

mount(Keys);
