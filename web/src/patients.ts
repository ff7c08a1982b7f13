// Patients' names for lists that carry only their id (appointments, wounds, alerts): asked once
// per id and remembered for the session (in memory).

import { useEffect, useState } from "preact/hooks";
import { client } from "./api";
import { PatientService, type Patient } from "./gen/telehealth/v1/patients_pb";

const known = new Map<string, Promise<Patient | undefined>>();

export function patient(id: string): Promise<Patient | undefined> {
  let found = known.get(id);
  if (!found) {
    found = client(PatientService)
      .getPatient({ patientId: id })
      .then((answer) => answer.patient)
      .catch(() => undefined);
    known.set(id, found);
  }
  return found;
}

/** « DUBOIS (ép. ROUSSEAU) Jeanne », as identity rules want the birth name first. */
export function displayName(p: Patient | undefined, fallback = "Patient"): string {
  const identity = p?.identity;
  if (!identity) return fallback;
  const used = identity.usedName && identity.usedName !== identity.birthName ? ` (${identity.usedName})` : "";
  const first = identity.usedFirstName || identity.firstNames.split(" ")[0] || "";
  return `${identity.birthName}${used} ${first}`.trim();
}

/** The patients of a list, by id, filled in as they arrive. */
export function usePatients(ids: string[]): Map<string, Patient> {
  const [map, setMap] = useState(new Map<string, Patient>());
  const key = [...new Set(ids)].sort().join(",");
  useEffect(() => {
    let current = true;
    for (const id of new Set(ids)) {
      void patient(id).then((found) => {
        if (current && found) setMap((previous) => new Map(previous).set(id, found));
      });
    }
    return () => {
      current = false;
    };
    // `key` stands for the set of ids.
  }, [key]);
  return map;
}
