// What every console page shares: rendering (Preact with htm, no build step), the
// page's context (who is signed in, where, with which permissions), the API client
// (session cookie, CSRF token, errors that say what is wrong) and small form and table
// components with labels and keyboard use built in.
import { h, render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);
export { useCallback, useEffect, useRef, useState };

export const context = JSON.parse(
  document.getElementById("console-context")?.textContent || "{}",
);

/** Whether the signed-in member's role grants `permission` ("offers.write"...). */
export function can(permission) {
  return (context.permissions || []).includes(permission);
}

/** A path of this tenant's API. */
export function tenantPath(path) {
  return `/tenants/${encodeURIComponent(context.tenant)}${path}`;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }

  /** The 422 problems, each {loc: [...], msg}; empty for other errors. */
  get problems() {
    const detail = this.body?.detail;
    return Array.isArray(detail) ? detail : [];
  }
}

function describe(status, body) {
  if (body?.message) return body.message;
  const detail = body?.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((p) => `${(p.loc || []).slice(1).join(".")}: ${p.msg}`).join("; ");
  if (detail && typeof detail === "object") return detail.message || JSON.stringify(detail);
  return `the server answered ${status}`;
}

export function signInAgain() {
  const here = location.pathname + location.search;
  location.assign(`/console/login?expired=1&next=${encodeURIComponent(here)}`);
}

/** Call the API as the signed-in member; the parsed JSON, or an ApiError. */
export async function api(method, path, body) {
  const headers = { "X-Requested-With": "vitrina-console", Accept: "application/json" };
  if (context.csrf_token) headers["X-CSRF-Token"] = context.csrf_token;
  const options = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401 && !path.startsWith("/auth/")) {
    signInAgain();
    throw new ApiError(401, { detail: "your session ended: sign in again" });
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

/** Load `path` (a GET of the API) and reload on demand: {data, error, loading, reload}. */
export function useApi(path) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const reload = useCallback(async () => {
    if (!path) return;
    setState((previous) => ({ ...previous, loading: true }));
    try {
      const data = await api("GET", path);
      setState({ data, error: null, loading: false });
    } catch (error) {
      setState({ data: null, error, loading: false });
    }
  }, [path]);
  useEffect(() => { reload(); }, [reload]);
  return { ...state, reload };
}

/** Run an API change and keep its outcome: [run, {busy, error, done}]. */
export function useAction(action) {
  const [state, setState] = useState({ busy: false, error: null, done: null });
  const run = useCallback(async (...args) => {
    setState({ busy: true, error: null, done: null });
    try {
      const done = await action(...args);
      setState({ busy: false, error: null, done: done ?? true });
      return done ?? true;
    } catch (error) {
      setState({ busy: false, error, done: null });
      return null;
    }
  }, [action]);
  const clear = useCallback(() => setState({ busy: false, error: null, done: null }), []);
  return [run, { ...state, clear }];
}

/** Render the page's component into its place. */
export function mount(component) {
  const root = document.getElementById("app");
  root.textContent = "";
  render(html`<${component} />`, root);
}

// ---- formatting --------------------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const number = new Intl.NumberFormat();

export function when(value) {
  return value ? dateTime.format(new Date(value)) : "—";
}

export function count(value) {
  return value === null || value === undefined ? "—" : number.format(value);
}

export function percent(value, digits = 1) {
  return value === null || value === undefined ? "—" : `${(value * 100).toFixed(digits)} %`;
}

export function ago(value, now = Date.now()) {
  if (!value) return "never";
  const seconds = Math.round((now - new Date(value).getTime()) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

// ---- components --------------------------------------------------------------------

let fieldSequence = 0;
/** A stable id for a label/input pair. */
export function useId(prefix = "field") {
  const ref = useRef(null);
  if (ref.current === null) ref.current = `${prefix}-${++fieldSequence}`;
  return ref.current;
}

/** A message box: kind is "info", "success", "warning" or "error". */
export function Notice({ kind = "info", children }) {
  const role = kind === "error" ? "alert" : "status";
  return html`<div class=${`notice ${kind}`} role=${role}>${children}</div>`;
}

/** What went wrong with a request, with a 422's problems listed. */
export function ErrorNotice({ error, title = "That did not work" }) {
  if (!error) return null;
  const problems = error.problems || [];
  return html`<${Notice} kind="error">
    <p><strong>${title}:</strong> ${problems.length ? "" : error.message}</p>
    ${problems.length > 0 && html`<ul>${problems.map((problem) => html`
      <li>${(problem.loc || []).slice(1).join(" › ") || "request"}: ${problem.msg}</li>`)}</ul>`}
  <//>`;
}

/** The problems of a 422 whose location starts with `prefix` (e.g. ["body", "steps", 2]). */
export function problemsAt(error, prefix) {
  return (error?.problems || []).filter((problem) =>
    prefix.every((part, index) => String(problem.loc?.[index]) === String(part)));
}

/** A labelled form control; `children` is a function of the control's id. */
export function Field({ label, hint, error, children, wide = false }) {
  const id = useId();
  const hintId = hint ? `${id}-hint` : undefined;
  const errorId = error ? `${id}-error` : undefined;
  const described = [hintId, errorId].filter(Boolean).join(" ") || undefined;
  return html`<div class=${`field${wide ? " wide" : ""}${error ? " invalid" : ""}`}>
    <label for=${id}>${label}</label>
    ${children({ id, "aria-describedby": described, "aria-invalid": error ? "true" : undefined })}
    ${hint && html`<p class="hint" id=${hintId}>${hint}</p>`}
    ${error && html`<p class="field-error" id=${errorId}>${error}</p>`}
  </div>`;
}

export function TextField({ label, value, onInput, type = "text", hint, error, ...rest }) {
  return html`<${Field} label=${label} hint=${hint} error=${error}>
    ${(control) => html`<input type=${type} value=${value ?? ""} ...${control} ...${rest}
      onInput=${(event) => onInput(event.currentTarget.value)} />`}
  <//>`;
}

export function SelectField({ label, value, onChange, options, hint, error, ...rest }) {
  return html`<${Field} label=${label} hint=${hint} error=${error}>
    ${(control) => html`<select value=${value} ...${control} ...${rest}
        onChange=${(event) => onChange(event.currentTarget.value)}>
      ${options.map(([optionValue, text]) => html`
        <option value=${optionValue} selected=${optionValue === value}>${text}</option>`)}
    </select>`}
  <//>`;
}

export function CheckField({ label, checked, onChange, hint }) {
  const id = useId("check");
  return html`<div class="field check">
    <input type="checkbox" id=${id} checked=${checked}
      onChange=${(event) => onChange(event.currentTarget.checked)} />
    <label for=${id}>${label}</label>
    ${hint && html`<p class="hint">${hint}</p>`}
  </div>`;
}

/** A data table: columns are [header, row => cell]; rows with a `key`. */
export function Table({ caption, columns, rows, empty = "Nothing here yet.", rowKey }) {
  if (!rows || rows.length === 0) return html`<p class="empty">${empty}</p>`;
  return html`<div class="table-wrap"><table>
    ${caption && html`<caption>${caption}</caption>`}
    <thead><tr>${columns.map(([header]) => html`<th scope="col">${header}</th>`)}</tr></thead>
    <tbody>${rows.map((row, index) => html`<tr key=${rowKey ? rowKey(row) : index}>
      ${columns.map(([, cell]) => html`<td>${cell(row)}</td>`)}
    </tr>`)}</tbody>
  </table></div>`;
}

/** A button that asks once more before it acts ("Delete" -> "Really delete?"). */
export function ConfirmButton({ label, confirm, onConfirm, disabled, kind = "danger" }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return html`<button type="button" class=${kind} disabled=${disabled}
      onClick=${() => setAsking(true)}>${label}</button>`;
  }
  return html`<span class="confirm">
    <button type="button" class=${kind} onClick=${() => { setAsking(false); onConfirm(); }}>
      ${confirm}</button>
    <button type="button" class="secondary" onClick=${() => setAsking(false)}>Cancel</button>
  </span>`;
}

/** A modal dialog (the browser's <dialog>: focus kept inside, Escape closes it). */
export function Dialog({ title, open, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);
  const titleId = useId("dialog");
  return html`<dialog ref=${ref} aria-labelledby=${titleId} onClose=${onClose}>
    <h2 id=${titleId}>${title}</h2>
    ${open && children}
  </dialog>`;
}

/** A page section with a heading and actions beside it. */
export function Section({ title, actions, children, id }) {
  const headingId = useId("section");
  return html`<section aria-labelledby=${headingId} id=${id}>
    <div class="section-head"><h2 id=${headingId}>${title}</h2>
      ${actions && html`<div class="actions">${actions}</div>`}</div>
    ${children}
  </section>`;
}

/** Shown while a page's data loads, or why it could not. */
export function Loading({ state, children }) {
  if (state.error) return html`<${ErrorNotice} error=${state.error} title="Could not load this" />`;
  if (state.loading && state.data === null) return html`<p class="loading">Loading…</p>`;
  return children(state.data);
}

/** Why a control is missing: the member's role does not grant `permission`. */
export function ReadOnlyNote({ permission }) {
  if (can(permission)) return null;
  return html`<p class="read-only">Your role (${context.role_label}) can look but not change
    this (it needs ${permission}).</p>`;
}
