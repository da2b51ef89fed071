// Message templates: the list by key, channel and locale, and an editor per channel with
// a live preview (POST /templates/preview as the marketer types, for the sample customer):
// push and web push as a notification, email rendered in a sandboxed frame, SMS with its
// characters, encoding and segments. PUT saves (checked again by the API), DELETE removes.
// The page's address names the template open (?key=...&channel=...&locale=...) or ?new.
import {
  ConfirmButton, ErrorNotice, Field, Loading, Notice, ReadOnlyNote, Section, SelectField, Table,
  TextField, api, can, context, count, html, mount, tenantPath, useApi, useEffect, useRef, useState,
  when,
} from "console/lib.js";

const WRITE = "templates.write";
/** How long typing must pause before the preview is asked again. */
const PREVIEW_DEBOUNCE_MS = 350;
const LOCALES = ["en-US", "en-GB", "es-ES", "fr-FR", "de-DE", "it-IT", "pt-BR"];
const UNSUBSCRIBE = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>';
/** Each channel's parts ([name, label, kind, required, hint]) and a valid first draft. */
const CHANNELS = {
  push: {
    label: "App push",
    parts: [["title", "Title", "line", true], ["body", "Body", "text", true],
      ["image_url", "Image URL", "line", false, "A picture shown in the expanded notification."],
      ["deep_link", "Deep link", "line", false, "Where tapping it leads in the app."]],
    draft: { title: "Hi {{ customer.first_name }}", body: "{{ offer.discount_percent|percent }} off {{ product.name }} today" },
  },
  web_push: {
    label: "Web push",
    parts: [["title", "Title", "line", true], ["body", "Body", "text", true],
      ["image_url", "Image URL", "line", false, "A picture shown under the text (where the browser shows one)."],
      ["deep_link", "Link", "line", false, "Where clicking it leads; the message's link when empty."]],
    draft: { title: "{{ offer.discount_percent|percent }} off {{ product.name }}", body: "Only until {{ coupon.expires_at|datetime }}" },
  },
  email: {
    label: "Email",
    parts: [["subject", "Subject", "line", true], ["html", "HTML", "code", true, "Must link {{ unsubscribe_url }}."],
      ["text", "Plain text", "text", true, "For mail readers without HTML; must hold {{ unsubscribe_url }} too."]],
    draft: {
      subject: "{{ customer.first_name }}, {{ offer.discount_percent|percent }} off for you",
      html: `<h1>Hi {{ customer.first_name }}</h1>\n<p>{{ offer.discount_percent|percent }} off <a href="{{ link }}">{{ product.name }}</a>.</p>\n${UNSUBSCRIBE}`,
      text: "Hi {{ customer.first_name }}, {{ offer.discount_percent|percent }} off {{ product.name }}: {{ link }}\nUnsubscribe: {{ unsubscribe_url }}",
    },
  },
  sms: {
    label: "SMS",
    parts: [["text", "Text", "text", true, "160 GSM-7 characters a segment (153 when split); 70 (67) as soon as one character is outside GSM-7."]],
    draft: { text: "{{ customer.first_name }}, {{ offer.discount_percent|percent }} off {{ product.name }}: {{ link }}" },
  },
};

function templateUrl({ key, channel, locale }) {
  return `?key=${encodeURIComponent(key)}&channel=${encodeURIComponent(channel)}&locale=${encodeURIComponent(locale)}`;
}

function templatePath({ key, channel, locale }) {
  return tenantPath(`/templates/${encodeURIComponent(key)}/${encodeURIComponent(channel)}/${encodeURIComponent(locale)}`);
}

/** The parts the API takes: only the channel's, empty optional ones left out. */
function partsOf(channel, parts) {
  const known = CHANNELS[channel]?.parts || Object.keys(parts).map((name) => [name]);
  return Object.fromEntries(known.map(([name]) => [name, parts[name]]).filter(([, value]) => value !== undefined && value !== ""));
}

/** The preview's 422 as a message per part (the template's own error names its part and
 * line; a validation error names it at the end of its place). */
function partProblems(error) {
  const found = {};
  const detail = error?.status === 422 ? error.body?.detail : null;
  if (detail && !Array.isArray(detail) && typeof detail === "object" && detail.part) {
    found[detail.part] = String(detail.message).replace(new RegExp(`^${detail.part}: `), "");
  } else if (Array.isArray(detail)) {
    for (const problem of detail) {
      const loc = (problem.loc || []).map(String);
      if (loc.includes("parts")) {
        const part = loc[loc.length - 1];
        found[part] = found[part] ? `${found[part]}; ${problem.msg}` : problem.msg;
      }
    }
  }
  return found;
}

// ---- previews -------------------------------------------------------------------------------

function PushPreview({ message, web }) {
  return html`<div class=${`notification-mock ${web ? "web" : "app"}`} role="img"
      aria-label=${`Notification: ${message.title}. ${message.body}`}>
    <div class="notification-app">${web ? `${context.tenant}'s web shop · browser notification` : `${context.tenant} app · now`}</div>
    <div class="notification-title">${message.title}</div>
    <div class="notification-body">${message.body}</div>
    ${message.image_url && html`<img class="notification-image" src=${message.image_url} alt="" />`}
  </div>
  ${message.deep_link && html`<p class="hint">Opens ${message.deep_link}</p>`}`;
}

function EmailPreview({ message }) {
  return html`<div class="email-mock">
    <p class="email-subject"><span class="hint">Subject</span> ${message.subject}</p>
    <iframe title="Email preview" sandbox="" srcdoc=${message.html} class="email-frame"></iframe>
    <details><summary>Plain-text version</summary><pre class="email-text">${message.text}</pre></details>
  </div>`;
}

function SmsPreview({ message }) {
  const characters = [...message.text].length;
  const unit = message.encoding === "GSM-7" ? "septets" : "code units";
  const perSegment = message.encoding === "GSM-7" ? (message.segments > 1 ? 153 : 160) : (message.segments > 1 ? 67 : 70);
  return html`<div class="sms-mock"><p class="sms-bubble">${message.text}</p></div>
    <dl class="sms-count" aria-label="SMS size">
      <div><dt>Characters</dt><dd>${count(characters)}</dd></div>
      <div><dt>Encoding</dt><dd>${message.encoding}</dd></div>
      <div><dt>Segments</dt><dd>${count(message.segments)}</dd></div>
      <div><dt>Length</dt><dd>${count(message.units)} ${unit} (${perSegment} a segment)</dd></div>
    </dl>`;
}

function Preview({ channel, state }) {
  const { result, error, busy } = state;
  return html`<aside class="template-preview" aria-label="Preview" aria-busy=${busy ? "true" : "false"}>
    <h3>Preview <span class="hint">for the sample customer${busy ? " · updating…" : ""}</span></h3>
    ${error && html`<${Notice} kind="error"><p>No preview: ${error.message}</p><//>`}
    ${result && html`<div class=${error ? "stale" : ""}>
      ${(channel === "push" || channel === "web_push") && html`<${PushPreview} message=${result.message} web=${channel === "web_push"} />`}
      ${channel === "email" && html`<${EmailPreview} message=${result.message} />`}
      ${channel === "sms" && html`<${SmsPreview} message=${result.message} />`}
      ${!CHANNELS[channel] && html`<pre>${JSON.stringify(result.message, null, 2)}</pre>`}
      ${result.warnings.length > 0 && html`<ul class="warnings">${result.warnings.map((warning) => html`<li>${warning}</li>`)}</ul>`}
    </div>`}
  </aside>`;
}

/** The preview of what is typed, asked again once typing pauses; answers to older
 * requests are dropped. */
function usePreview(channel, locale, parts) {
  const [state, setState] = useState({ result: null, error: null, busy: false });
  const sequence = useRef(0);
  const body = JSON.stringify({ spec: { channel, locale, parts: partsOf(channel, parts) } });
  useEffect(() => {
    const mine = ++sequence.current;
    setState((previous) => ({ ...previous, busy: true }));
    const timer = setTimeout(async () => {
      try {
        const result = await api("POST", tenantPath("/templates/preview"), JSON.parse(body));
        if (mine === sequence.current) setState({ result, error: null, busy: false });
      } catch (error) {
        if (mine === sequence.current) setState((previous) => ({ result: previous.result, error, busy: false }));
      }
    }, PREVIEW_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [body]);
  return state;
}

// ---- the editor -------------------------------------------------------------------------------

function PartField({ name, label, kind, required, hint, value, onInput, error, readOnly }) {
  if (kind === "line") {
    return html`<${TextField} label=${label} value=${value} required=${required} hint=${hint} error=${error}
      readOnly=${readOnly} onInput=${onInput} wide />`;
  }
  return html`<${Field} label=${label} hint=${hint} error=${error} wide>
    ${(control) => html`<textarea ...${control} name=${name} rows=${kind === "code" ? 12 : 4} required=${required}
      readOnly=${readOnly} class=${kind === "code" ? "code" : ""} spellcheck=${kind === "code" ? "false" : "true"}
      value=${value ?? ""} onInput=${(event) => onInput(event.currentTarget.value)}></textarea>`}
  <//>`;
}

function TemplateEditor({ initial, isNew, onSaved, onDeleted }) {
  const [template, setTemplate] = useState(initial);
  const [saveError, setSaveError] = useState(null);
  const [saved, setSaved] = useState(null);
  const [busy, setBusy] = useState(false);
  const writable = can(WRITE);
  const { channel, locale } = template;
  const preview = usePreview(channel, locale, template.parts);
  const problems = partProblems(preview.error);
  const saveProblems = partProblems(saveError);
  const setPart = (name) => (value) => { setSaved(null); setTemplate((previous) => ({ ...previous, parts: { ...previous.parts, [name]: value } })); };
  const setChannel = (value) => setTemplate((previous) => ({ ...previous, channel: value, parts: { ...(CHANNELS[value]?.draft || {}) } }));
  const keyError = isNew && template.key && !/^[a-z0-9][a-z0-9_.-]{0,63}$/.test(template.key)
    ? "Lower-case letters, digits, dot, dash and underscore." : null;
  const parts = CHANNELS[channel]?.parts || Object.keys(template.parts).map((name) => [name, name, "text", true]);

  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setSaveError(null);
    try {
      const answer = await api("PUT", templatePath(template), { parts: partsOf(channel, template.parts) });
      setSaved(answer);
      onSaved(answer);
    } catch (failure) {
      setSaveError(failure);
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    try {
      await api("DELETE", templatePath(template));
      onDeleted(template);
    } catch (failure) {
      setSaveError(failure);
    }
  }

  return html`<div class="template-editing">
    <form class="stack" aria-label="Template" onSubmit=${save} novalidate>
      <${ReadOnlyNote} permission=${WRITE} />
      ${saved && html`<${Notice} kind="success"><p>Template ${saved.key} (${saved.channel}, ${saved.locale}) saved: version ${saved.version}.</p><//>`}
      <${ErrorNotice} error=${saveError} title="Template not saved" />
      <div class="row">
        <${TextField} label="Key" value=${template.key} disabled=${!isNew} error=${keyError}
          hint="How scenarios name it." onInput=${(value) => setTemplate((previous) => ({ ...previous, key: value }))} />
        <${SelectField} label="Channel" value=${channel} disabled=${!isNew}
          options=${Object.entries(CHANNELS).map(([name, { label }]) => [name, label])} onChange=${setChannel} />
        <${SelectField} label="Locale" value=${locale} disabled=${!isNew} options=${LOCALES.map((item) => [item, item])}
          onChange=${(value) => setTemplate((previous) => ({ ...previous, locale: value }))} />
      </div>
      ${parts.map(([name, label, kind, required, hint]) => html`<${PartField} key=${`${channel}/${name}`}
        name=${name} label=${label} kind=${kind} required=${required} hint=${hint} readOnly=${!writable}
        value=${template.parts[name]} onInput=${setPart(name)} error=${problems[name] || saveProblems[name] || null} />`)}
      <p class="hint">Fields: <code>{{ customer.first_name }}</code>, <code>{{ product.name }}</code>,
        <code>{{ offer.discount_percent|percent }}</code>, <code>{{ coupon.code }}</code>, <code>{{ link }}</code>…
        Money and dates need their filter: <code>{{ product.price|money }}</code>, <code>{{ coupon.expires_at|datetime }}</code>.</p>
      ${writable && html`<div class="actions">
        <button type="submit" disabled=${busy || !!keyError || !template.key}>${busy ? "Saving…" : "Save template"}</button>
        ${!isNew && html`<${ConfirmButton} label="Delete" confirm=${`Delete ${template.key} (${channel}, ${locale})`}
          onConfirm=${remove} />`}
      </div>`}
    </form>
    <${Preview} channel=${channel} state=${preview} />
  </div>`;
}

function TemplateList() {
  const templates = useApi(tenantPath("/templates"));
  const query = new URLSearchParams(location.search);
  return html`<${Section} title="Templates" actions=${can(WRITE) && html`<a class="button" href="?new">New template</a>`}>
    <${ReadOnlyNote} permission=${WRITE} />
    ${query.has("deleted") && html`<${Notice} kind="success"><p>Template ${query.get("deleted")} deleted.</p><//>`}
    <${Loading} state=${templates}>${(rows) => html`<${Table} caption="Templates by key, channel and locale"
      rows=${rows} rowKey=${(row) => `${row.key}/${row.channel}/${row.locale}`} empty="No template yet."
      columns=${[
        ["Key", (row) => html`<a href=${templateUrl(row)}><code>${row.key}</code></a>`],
        ["Channel", (row) => CHANNELS[row.channel]?.label || row.channel],
        ["Locale", (row) => row.locale],
        ["Fields used", (row) => row.fields.join(", ") || "—"],
        ["Version", (row) => row.version],
        ["Changed", (row) => when(row.updated_at)],
        [html`<span class="visually-hidden">Actions</span>`, (row) => html`<a class="button secondary small" href=${templateUrl(row)}
          aria-label=${`Open ${row.key} (${row.channel}, ${row.locale})`}>${can(WRITE) ? "Edit" : "View"}</a>`],
      ]} />`}<//>
  <//>`;
}

function Page() {
  const query = new URLSearchParams(location.search);
  const back = html`<p><a href=${location.pathname}>← All templates</a></p>`;
  const deleted = (template) => location.assign(`${location.pathname}?deleted=${encodeURIComponent(`${template.key} (${template.channel}, ${template.locale})`)}`);
  if (query.has("new")) {
    if (!can(WRITE)) return html`${back}<${ReadOnlyNote} permission=${WRITE} />`;
    return html`${back}<${Section} title="New template">
      <${TemplateEditor} isNew initial=${{ key: "", channel: "push", locale: "es-ES", parts: { ...CHANNELS.push.draft } }}
        onSaved=${(saved) => location.assign(`${templateUrl(saved)}&saved=${saved.version}`)} onDeleted=${deleted} />
    <//>`;
  }
  if (!query.get("key")) return html`<${TemplateList} />`;
  const wanted = { key: query.get("key"), channel: query.get("channel"), locale: query.get("locale") };
  return html`${back}<${OpenTemplate} wanted=${wanted} onDeleted=${deleted} />`;
}

function OpenTemplate({ wanted, onDeleted }) {
  const saved = useApi(templatePath(wanted));
  return html`<${Loading} state=${saved}>${(row) => html`<${Section}
      title=${`${row.key} · ${CHANNELS[row.channel]?.label || row.channel} · ${row.locale}`}>
      ${new URLSearchParams(location.search).has("saved") && html`<${Notice} kind="success">
        <p>Template ${row.key} (${row.channel}, ${row.locale}) saved: version ${row.version}.</p><//>`}
      <p class="hint">Version ${row.version}, changed ${when(row.updated_at)}.</p>
      <${TemplateEditor} initial=${row} isNew=${false} onSaved=${() => {}} onDeleted=${onDeleted} />
    <//>`}<//>`;
}

mount(Page);
