// The organisation's administration: members, partnerships, enrolled devices (revoke) and open
// sessions (end).

import { client } from "../api";
import { DirectoryService, PartnershipStatus } from "../gen/telehealth/v1/directory_pb";
import { AuthService, type Device, type SessionInfo } from "../gen/telehealth/v1/auth_pb";
import { ROLE_NAMES, formatDateTime } from "../format";
import { ErrorMessage, Loading, Page, useLoad } from "../ui";
import { useState } from "preact/hooks";
import { OrganisationActivity } from "./activity";

const PARTNERSHIP: Record<PartnershipStatus, string> = {
  [PartnershipStatus.UNSPECIFIED]: "—",
  [PartnershipStatus.PROPOSED]: "proposé",
  [PartnershipStatus.ACTIVE]: "actif",
  [PartnershipStatus.ENDED]: "terminé",
};

export function Admin() {
  const data = useLoad(async () => {
    const [members, partnerships, devices, sessions] = await Promise.all([
      client(DirectoryService).listMembers({ pageSize: 200 }),
      client(DirectoryService).listPartnerships({}),
      client(AuthService).listDevices({ organisation: true }),
      client(AuthService).listSessions({ organisation: true }),
    ]);
    return { members: members.members, partnerships: partnerships.partnerships, devices: devices.devices, sessions: sessions.sessions };
  }, []);
  const [error, setError] = useState<unknown>();

  async function revoke(device: Device) {
    if (!confirm(`Révoquer l’appareil « ${device.name} » ? Il ne pourra plus se connecter.`)) return;
    try {
      await client(AuthService).revokeDevice({ deviceId: device.deviceId });
      data.reload();
    } catch (caught) {
      setError(caught);
    }
  }

  async function end(session: SessionInfo) {
    try {
      await client(AuthService).endSession({ sessionId: session.sessionId });
      data.reload();
    } catch (caught) {
      setError(caught);
    }
  }

  if (data.error) return <Page title="Administration"><ErrorMessage error={data.error} /></Page>;
  if (!data.data) return <Loading />;
  const { members, partnerships, devices, sessions } = data.data;
  return (
    <Page title="Administration">
      <ErrorMessage error={error} />
      <section class="card">
        <h2>Membres ({members.length})</h2>
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Identifiant</th>
              <th scope="col">RPPS</th>
              <th scope="col">Rôles</th>
              <th scope="col">Depuis</th>
            </tr>
          </thead>
          <tbody>
            {members.map((m) => (
              <tr>
                <td>{m.subject}</td>
                <td>{m.rppsNumber}</td>
                <td>
                  {m.roles.map((r) => ROLE_NAMES[r]).join(", ")}
                  {m.specialty && ` (${m.specialty})`}
                </td>
                <td>{formatDateTime(m.sinceTime)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="card">
        <h2>Partenariats</h2>
        <ul>
          {partnerships.map((p) => (
            <li>
              {p.centreOrgId} ↔ {p.hospitalOrgId} : {PARTNERSHIP[p.status]}
            </li>
          ))}
          {partnerships.length === 0 && <li class="hint">Aucun partenariat.</li>}
        </ul>
      </section>
      <OrganisationActivity />
      <section class="card">
        <h2>Appareils enrôlés</h2>
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Appareil</th>
              <th scope="col">Personne</th>
              <th scope="col">Enrôlé le</th>
              <th scope="col">Expire le</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {devices.map((d) => (
              <tr>
                <td>{d.name}</td>
                <td>{d.subject}</td>
                <td>{formatDateTime(d.enrolTime)}</td>
                <td>{formatDateTime(d.expireTime)}</td>
                <td>
                  {d.revokeTime ? (
                    `révoqué le ${formatDateTime(d.revokeTime)}`
                  ) : (
                    <button type="button" onClick={() => void revoke(d)}>
                      Révoquer
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="card">
        <h2>Sessions ouvertes</h2>
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Personne</th>
              <th scope="col">Ouverte le</th>
              <th scope="col">Dernier usage</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {sessions.map((s) => (
              <tr>
                <td>
                  {s.subject}
                  {s.current && " (vous)"}
                </td>
                <td>{formatDateTime(s.createTime)}</td>
                <td>{formatDateTime(s.lastUseTime)}</td>
                <td>
                  {!s.current && (
                    <button type="button" onClick={() => void end(s)}>
                      Terminer
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </Page>
  );
}
