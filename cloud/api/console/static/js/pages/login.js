// Signing in: email and password; after too many failures the server says how long to
// wait, and the page says so.
import { ApiError, ErrorNotice, Notice, TextField, api, context, html, mount, useState }
  from "console/lib.js";

function SignIn() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const expired = new URLSearchParams(location.search).has("expired");

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api("POST", "/auth/login", { email, password });
      location.assign(context.next || "/console");
    } catch (failure) {
      setError(failure instanceof ApiError ? failure : new ApiError(0, { detail: String(failure) }));
      setBusy(false);
    }
  }

  return html`<form onSubmit=${submit} class="stack" novalidate>
    ${expired && !error && html`<${Notice} kind="warning">
      <p>Your session ended. Sign in again to go on where you were.</p><//>`}
    <${ErrorNotice} error=${error} title="Not signed in" />
    <${TextField} label="Email address" type="email" value=${email} onInput=${setEmail}
      autocomplete="username" required autofocus />
    <${TextField} label="Password" type="password" value=${password} onInput=${setPassword}
      autocomplete="current-password" required />
    <button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
    <p class="hint">No account? An owner of your shop invites you from the console's
      Members page.</p>
  </form>`;
}

mount(SignIn);
