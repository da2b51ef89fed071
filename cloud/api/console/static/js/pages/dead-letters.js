// Messages from this tenant's gateways that the cloud could not use, with the reason:
// where a gateway sending something wrong shows up first.
import { Loading, Section, Table, count, html, mount, tenantPath, useApi, when }
  from "console/lib.js";

function DeadLetters() {
  const letters = useApi(tenantPath("/dead-letters?limit=200"));
  return html`<${Section} title="Messages the cloud could not read" actions=${html`
      <button type="button" class="secondary" onClick=${letters.reload}>Refresh</button>`}>
    <p class="hint">Kept with a truncated copy of what arrived, for an operator to inspect in
      the database; the reason says what was wrong.</p>
    <${Loading} state=${letters}>${(rows) => html`<${Table} caption="Newest first"
      rows=${rows} rowKey=${(letter) => letter.id} empty="None: every message was read."
      columns=${[
        ["Received", (letter) => when(letter.received_at)],
        ["Topic", (letter) => html`<code>${letter.topic}</code>`],
        ["Reason", (letter) => letter.reason],
        ["Size", (letter) => `${count(letter.payload_size)} bytes${letter.truncated ? " (cut)" : ""}`],
      ]} />`}<//>
  <//>`;
}

mount(DeadLetters);
