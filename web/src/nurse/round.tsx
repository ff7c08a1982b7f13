// The nurse's day, phone first: today's teleconsultations in time order, then the wounds to
// assess (most overdue first), each with the patient's address.

import { useEffect } from "preact/hooks";
import { timestampFromDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { client, currentIdentity } from "../api";
import { AppointmentStatus, SchedulingService } from "../gen/telehealth/v1/scheduling_pb";
import { WoundService, type WoundSummary } from "../gen/telehealth/v1/wound_pb";
import type { Patient } from "../gen/telehealth/v1/patients_pb";
import { AETIOLOGY, addDays, endOfParisDay, formatBodySite, formatDateTime, formatTime, parisDay } from "../format";
import { displayName, usePatients } from "../patients";
import { sendAll } from "./outbox-store";
import { ErrorMessage, Loading, Page, useLoad } from "../ui";

export function Round() {
  const me = currentIdentity()!;
  useEffect(() => void sendAll(), []);
  const day = useLoad(async () => {
    const today = parisDay(new Date());
    const [appointments, round] = await Promise.all([
      // Today in Paris, and whatever starts within the hour (a visit just after midnight).
      client(SchedulingService).listAppointments({
        nurseSubject: me.subject,
        period: {
          case: "range",
          value: {
            startTime: timestampFromDate(endOfParisDay(addDays(today, -1))),
            endTime: timestampFromDate(new Date(Math.max(endOfParisDay(today).getTime(), Date.now() + 3_600_000))),
          },
        },
        pageSize: 100,
      }),
      // Every open wound of the nurse's care teams: the due ones first, the others for an
      // unplanned visit.
      client(WoundService).listNurseRound({ pageSize: 100 }),
    ]);
    const endOfToday = endOfParisDay(today).getTime();
    const due = (w: (typeof round.wounds)[number]) =>
      !w.wound?.nextAssessmentDueAt || timestampMs(w.wound.nextAssessmentDueAt) < endOfToday;
    return {
      appointments: appointments.appointments,
      wounds: round.wounds.filter(due),
      later: round.wounds.filter((w) => !due(w)),
    };
  }, [me.subject]);

  const ids = [
    ...(day.data?.appointments ?? []).map((a) => a.patient?.pseudonym ?? ""),
    ...(day.data?.wounds ?? []).map((w) => w.wound?.patient?.pseudonym ?? ""),
  ].filter(Boolean);
  const patients = usePatients(ids);

  return (
    <Page title="Tournée du jour">
      <ErrorMessage error={day.error} />
      {!day.data ? (
        <Loading />
      ) : (
        <>
          <h2>Téléconsultations</h2>
          {day.data.appointments.length === 0 && <p class="hint">Aucune aujourd’hui.</p>}
          <ol class="round">
            {day.data.appointments
              .filter((a) => a.status !== AppointmentStatus.CANCELLED)
              .sort((a, b) => timestampMs(a.time!.startTime!) - timestampMs(b.time!.startTime!))
              .map((a) => {
                const p = patients.get(a.patient?.pseudonym ?? "");
                return (
                  <li class="card visit">
                    <p class="when">{formatTime(a.time?.startTime)}</p>
                    <p class="who">{displayName(p)}</p>
                    <Address patient={p} />
                    <a class="button primary" href={`/infirmiere/consultation/${encodeURIComponent(a.appointmentId)}`}>
                      Rejoindre la téléconsultation
                    </a>
                  </li>
                );
              })}
          </ol>
          <h2>Plaies à évaluer</h2>
          {day.data.wounds.length === 0 && <p class="hint">Aucune évaluation prévue.</p>}
          <ol class="round">
            {day.data.wounds.map((summary) => (
              <WoundVisit summary={summary} patients={patients} />
            ))}
          </ol>
          {day.data.later.length > 0 && (
            <>
              <h2>Autres plaies suivies</h2>
              <ol class="round">
                {day.data.later.map((summary) => (
                  <WoundVisit summary={summary} patients={patients} />
                ))}
              </ol>
            </>
          )}
        </>
      )}
    </Page>
  );
}

function WoundVisit({ summary, patients }: { summary: WoundSummary; patients: Map<string, Patient> }) {
  const wound = summary.wound!;
  const p = patients.get(wound.patient?.pseudonym ?? "");
  return (
    <li class="card visit">
      <p class="who">{displayName(p)}</p>
      <Address patient={p} />
      <p>
        {AETIOLOGY[wound.description?.aetiology ?? 0]} — {formatBodySite(wound.description?.bodySite)}
      </p>
      <p class={wound.assessmentOverdue ? "due overdue" : "due"}>
        {wound.assessmentOverdue ? "En retard depuis le " : "Prévue le "}
        {formatDateTime(wound.nextAssessmentDueAt)}
      </p>
      <a class="button primary" href={`/infirmiere/plaie/${encodeURIComponent(wound.woundId)}`}>
        Nouvelle évaluation
      </a>
    </li>
  );
}

function Address({ patient }: { patient: Patient | undefined }) {
  const address = patient?.address;
  if (!address || (address.lines.length === 0 && !address.city)) return null;
  return (
    <address>
      {address.lines.join(", ")}
      {address.lines.length > 0 && <br />}
      {address.postalCode} {address.city}
      {address.accessNote && <span class="hint"> — {address.accessNote}</span>}
    </address>
  );
}
