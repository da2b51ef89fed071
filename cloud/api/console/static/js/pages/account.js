// One's own account: tenants and roles, a new password (other sessions end), signing out.
import { ErrorNotice, Notice, Section, Table, TextField, api, context, html, mount,
  useState } from "console/lib.js";

function Account() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [repeat, setRepeat] = useState("");
  const [error, setError] = useState(null);
  const [changed, setChanged] = useState(false);
  const mismatch = repeat && repeat !== next ? "The two passwords differ." : null;

  async function change(event) {
    event.preventDefault();
    if (mismatch) return;
    setError(null);
    setChanged(false);
    try {
      await api("POST", "/auth/password", { current_password: current, new_password: next });
      setChanged(true);
      setCurrent(""); setNext(""); setRepeat("");
    } catch (failure) {
      setError(failure);
    }
  }

  async function signOut() {
    try { await api("POST", "/auth/logout"); } finally { location.assign("/console/login"); }
  }

  return html`
    <p>Signed in as <strong>${context.member.email}</strong>.</p>
    <${Section} title="Your tenants">
      <${Table} columns=${[
        ["Tenant", (row) => html`<a href=${`/console?tenant=${encodeURIComponent(row.tenant)}`}>${row.tenant}</a>`],
        ["Role", (row) => row.role.replace("_", " ")],
      ]} rows=${context.tenants} empty="You are not a member of any tenant yet." />
    <//>
    <${Section} title="Change your password">
      <form onSubmit=${change} class="stack">
        ${changed && html`<${Notice} kind="success"><p>Password changed. Your other sessions
          have ended.</p><//>`}
        <${ErrorNotice} error=${error} title="Password not changed" />
        <${TextField} label="Current password" type="password" value=${current}
          onInput=${setCurrent} autocomplete="current-password" required />
        <${TextField} label="New password" type="password" value=${next} onInput=${setNext}
          autocomplete="new-password" minlength="12" required
          hint="At least 12 characters." />
        <${TextField} label="New password again" type="password" value=${repeat}
          onInput=${setRepeat} autocomplete="new-password" required error=${mismatch} />
        <button type="submit">Change password</button>
      </form>
    <//>
    <p><button type="button" class="secondary" onClick=${signOut}>Sign out</button></p>`;
}

mount(Account);
