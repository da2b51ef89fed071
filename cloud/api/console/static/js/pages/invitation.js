// Joining a tenant by invitation: a new address sets its password here; an address with
// an account signs in first, then accepts.
import { ErrorNotice, Loading, Notice, TextField, api, context, html, mount, useApi,
  useState } from "console/lib.js";

function Join() {
  const invitation = useApi(`/auth/invitations/${encodeURIComponent(context.token)}`);
  return html`<${Loading} state=${invitation}>
    ${(offer) => html`<${Accept} offer=${offer} />`}
  <//>`;
}

function Accept({ offer }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [repeat, setRepeat] = useState("");
  const [error, setError] = useState(null);
  const mismatch = repeat && repeat !== password ? "The two passwords differ." : null;

  async function submit(event) {
    event.preventDefault();
    if (mismatch) return;
    setError(null);
    try {
      const body = offer.has_account ? {} : { name, password };
      await api("POST", `/auth/invitations/${encodeURIComponent(context.token)}/accept`, body);
      location.assign(`/console?tenant=${encodeURIComponent(offer.tenant)}`);
    } catch (failure) {
      setError(failure);
    }
  }

  const role = offer.role.replace("_", " ");
  const here = location.pathname;
  return html`<form onSubmit=${submit} class="stack">
    <p>You are invited to join <strong>${offer.tenant}</strong> as <strong>${role}</strong>,
      as ${offer.email}.</p>
    <${ErrorNotice} error=${error} title="Not joined" />
    ${offer.has_account ? html`
      <${Notice}><p>This address has an account. <a href=${`/console/login?next=${encodeURIComponent(here)}`}>
        Sign in as ${offer.email}</a>, then come back to this link to accept.</p><//>
      <button type="submit">Accept the invitation</button>` : html`
      <${TextField} label="Your name" value=${name} onInput=${setName} autocomplete="name" />
      <${TextField} label="Choose a password" type="password" value=${password}
        onInput=${setPassword} autocomplete="new-password" minlength="12" required
        hint="At least 12 characters; a few unrelated words make a good one." />
      <${TextField} label="The password again" type="password" value=${repeat}
        onInput=${setRepeat} autocomplete="new-password" required error=${mismatch} />
      <button type="submit">Join ${offer.tenant}</button>`}
  </form>`;
}

mount(Join);
