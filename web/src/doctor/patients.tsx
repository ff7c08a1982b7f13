// Finding a patient of the centre by name and birth date, or by INS.

import { useState } from "preact/hooks";
import { client } from "../api";
import { PatientService, type PatientSummary } from "../gen/telehealth/v1/patients_pb";
import { IDENTITY_STATUS, formatBirthDate } from "../format";
import { ErrorMessage, Page } from "../ui";

export function PatientSearch() {
  const [name, setName] = useState("");
  const [birthDate, setBirthDate] = useState("");
  const [found, setFound] = useState<PatientSummary[]>();
  const [error, setError] = useState<unknown>();

  async function search(event: Event) {
    event.preventDefault();
    setError(undefined);
    try {
      const digits = name.replace(/\s/g, "");
      const byIns = /^\d{13,15}$/.test(digits);
      const answer = await client(PatientService).searchPatients({
        name: byIns ? "" : name.trim(),
        ins: byIns ? digits : "",
        birthDate,
        pageSize: 50,
      });
      setFound(answer.patients);
    } catch (caught) {
      setError(caught);
    }
  }

  return (
    <Page title="Patients">
      <form class="card inline" onSubmit={search} role="search">
        <div>
          <label for="patient-name">Nom ou INS</label>
          <input id="patient-name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </div>
        <div>
          <label for="patient-birth">Date de naissance</label>
          <input
            id="patient-birth"
            type="date"
            value={birthDate}
            onInput={(e) => setBirthDate((e.target as HTMLInputElement).value)}
          />
        </div>
        <button type="submit" class="primary">
          Rechercher
        </button>
      </form>
      <ErrorMessage error={error} />
      {found && (
        <table class="list">
          <caption>{found.length} patient(s)</caption>
          <thead>
            <tr>
              <th scope="col">Nom de naissance</th>
              <th scope="col">Prénoms</th>
              <th scope="col">Né(e) le</th>
              <th scope="col">Identité</th>
            </tr>
          </thead>
          <tbody>
            {found.map((p) => (
              <tr>
                <td>
                  <a href={`/medecin/patient/${encodeURIComponent(p.id)}`}>
                    {p.birthName}
                    {p.usedName && p.usedName !== p.birthName ? ` (${p.usedName})` : ""}
                  </a>
                </td>
                <td>{p.firstNames}</td>
                <td>{formatBirthDate(p.birthDate)}</td>
                <td>{IDENTITY_STATUS[p.identityStatus]}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Page>
  );
}
