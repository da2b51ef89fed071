// The tenant's members and their roles, and invitations to join. An invitation's link is
// shown once, when it is made: send it to the person (only its hash is kept).
import {
  ConfirmButton, ErrorNotice, Loading, Notice, Section, SelectField, Table, TextField, api,
  context, html, mount, tenantPath, useApi, useState, when,
} from "console/lib.js";

const ROLES = [
  ["owner", "owner: members, keys, everything"],
  ["marketer", "marketer: offers, templates, scenarios"],
  ["store_operator", "store operator: stores, geofences, gateways"],
  ["analyst", "analyst: reads everything, changes nothing"],
];
const label = (role) => role.replace("_", " ");

function Invite({ onInvited }) {
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("analyst");
  const [error, setError] = useState(null);
  const [link, setLink] = useState(null);

  async function invite(event) {
    event.preventDefault();
    setError(null);
    try {
      const made = await api("POST", tenantPath("/members/invitations"), { email, role });
      setLink(made);
      setEmail("");
      onInvited();
    } catch (failure) {
      setError(failure);
    }
  }

  return html`<form onSubmit=${invite} class="stack" aria-label="Invite a member">
    <${ErrorNotice} error=${error} title="Not invited" />
    ${link && html`<${Notice} kind="success">
      <p>Invitation for ${link.email} made, valid until ${when(link.expires_at)}. Send them
        this link (it is not shown again):</p>
      <p><label for="invitation-link">Invitation link</label>
        <input id="invitation-link" class="mono" readonly value=${link.accept_url} size="80"
          onFocus=${(event) => event.currentTarget.select()} /></p>
    <//>`}
    <div class="row">
      <${TextField} label="Email address" type="email" value=${email} onInput=${setEmail}
        required />
      <${SelectField} label="Role" value=${role} onChange=${setRole} options=${ROLES} />
      <button type="submit">Invite</button>
    </div>
  </form>`;
}

function RoleSelect({ member, onChanged, onError }) {
  async function change(role) {
    try {
      await api("PATCH", tenantPath(`/members/${member.id}`), { role });
      onChanged();
    } catch (failure) {
      onError(failure);
    }
  }
  return html`<${SelectField} label=${`Role of ${member.email}`} value=${member.role}
    onChange=${change} options=${ROLES.map(([value]) => [value, label(value)])} />`;
}

function Members() {
  const listing = useApi(tenantPath("/members"));
  const [error, setError] = useState(null);
  const act = (action) => async () => {
    setError(null);
    try {
      await action();
      listing.reload();
    } catch (failure) {
      setError(failure);
    }
  };

  return html`
    <${Section} title="Invite someone"><${Invite} onInvited=${listing.reload} /><//>
    <${Loading} state=${listing}>${(data) => html`
      <${Section} title="Members">
        <${ErrorNotice} error=${error} title="Not changed" />
        <${Table} caption=${`People who may sign in to ${context.tenant}`} rows=${data.members}
          rowKey=${(member) => member.id} columns=${[
            ["Email", (member) => member.email],
            ["Name", (member) => member.name || "—"],
            ["Role", (member) => html`<${RoleSelect} member=${member} onChanged=${listing.reload}
              onError=${setError} />`],
            ["Since", (member) => when(member.since)],
            ["", (member) => html`<${ConfirmButton} label=${`Remove ${member.email}`}
              confirm=${`Really remove ${member.email}`}
              onConfirm=${act(() => api("DELETE", tenantPath(`/members/${member.id}`)))} />`],
          ]} />
      <//>
      <${Section} title="Open invitations">
        <${Table} caption="Invitations not yet accepted" rows=${data.invitations}
          rowKey=${(invitation) => invitation.id} empty="No open invitations." columns=${[
            ["Email", (invitation) => invitation.email],
            ["Role", (invitation) => label(invitation.role)],
            ["Invited by", (invitation) => invitation.invited_by],
            ["Expires", (invitation) => when(invitation.expires_at)],
            ["", (invitation) => html`<${ConfirmButton} label=${`Withdraw ${invitation.email}`}
              confirm="Really withdraw"
              onConfirm=${act(() => api("DELETE", tenantPath(`/members/invitations/${invitation.id}`)))} />`],
          ]} />
      <//>`}<//>`;
}

mount(Members);
