// The doctor's agenda: a day or a week, in Paris time, with the waiting room kept live by
// `WatchAppointments` (a nurse checking in shows at once).

import { useEffect, useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client, currentIdentity } from "../api";
import {
  AppointmentStatus,
  SchedulingService,
  type Appointment,
  type ListAppointmentsRequestSchema,
} from "../gen/telehealth/v1/scheduling_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  APPOINTMENT_STATUS,
  TIME_ZONE,
  addDays,
  formatDay,
  formatShortDay,
  formatTime,
  mondayOf,
  noonOf,
  parisDay,
} from "../format";
import { displayName, usePatients } from "../patients";
import { navigate } from "../router";
import { useLiveWatch } from "../live";
import { ErrorMessage, Loading, Page } from "../ui";

type View = "day" | "week";

async function listAll(request: MessageInitShape<typeof ListAppointmentsRequestSchema>): Promise<Appointment[]> {
  const found: Appointment[] = [];
  let pageToken = "";
  do {
    const page = await client(SchedulingService).listAppointments({ ...request, pageSize: 200, pageToken });
    found.push(...page.appointments);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return found;
}

/** The calendar days a view of `day` shows: that day, or Monday to Sunday of its week. */
function daysShown(view: View, day: string): string[] {
  return view === "day" ? [day] : Array.from({ length: 7 }, (_, i) => addDays(mondayOf(day), i));
}

async function load(view: View, day: string, subject: string): Promise<Appointment[]> {
  const days = daysShown(view, day);
  const lists = await Promise.all(
    days.map((date) =>
      listAll({ doctorSubject: subject, period: { case: "day", value: { date, timeZone: TIME_ZONE } } }),
    ),
  );
  return lists.flat().sort((a, b) => timestampMs(a.time!.startTime!) - timestampMs(b.time!.startTime!));
}

export function Agenda() {
  const me = currentIdentity()!;
  const [view, setView] = useState<View>("day");
  const [day, setDay] = useState(parisDay(new Date()));
  const [appointments, setAppointments] = useState<Appointment[]>();
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    let current = true;
    setAppointments(undefined);
    load(view, day, me.subject).then((list) => current && setAppointments(list), (e) => current && setError(e));
    return () => {
      current = false;
    };
  }, [view, day, me.subject]);

  // Live changes (check-in, cancellation, booking by a colleague) replace the appointment shown;
  // after a watch ends, the period is loaded again once the next one is ready.
  const live = useLiveWatch(
    async (signal, ready) => {
      for await (const message of client(SchedulingService).watchAppointments(
        { practitionerSubject: me.subject },
        { signal },
      )) {
        if (message.payload.case === "ready") ready();
        if (message.payload.case !== "change") continue;
        const changed = message.payload.value.appointment;
        if (!changed) continue;
        setAppointments((list) => {
          if (!list) return list;
          const others = list.filter((a) => a.appointmentId !== changed.appointmentId);
          if (!daysShown(view, day).includes(parisDay(changed.time!.startTime!))) return others;
          return [...others, changed].sort((a, b) => timestampMs(a.time!.startTime!) - timestampMs(b.time!.startTime!));
        });
      }
    },
    () => load(view, day, me.subject).then(setAppointments, setError),
    [me.subject, view, day],
  );

  const patients = usePatients((appointments ?? []).map((a) => a.patient?.pseudonym ?? "").filter(Boolean));
  const waiting = (appointments ?? []).filter((a) => a.status === AppointmentStatus.ARRIVED);
  const step = view === "day" ? 1 : 7;

  return (
    <Page
      title="Agenda"
      actions={
        <>
          <div role="group" aria-label="Affichage">
            <button type="button" aria-pressed={view === "day"} onClick={() => setView("day")}>
              Jour
            </button>
            <button type="button" aria-pressed={view === "week"} onClick={() => setView("week")}>
              Semaine
            </button>
          </div>
          <button type="button" onClick={() => setDay(addDays(day, -step))} aria-label="Période précédente">
            ←
          </button>
          <button type="button" onClick={() => setDay(parisDay(new Date()))}>
            Aujourd’hui
          </button>
          <button type="button" onClick={() => setDay(addDays(day, step))} aria-label="Période suivante">
            →
          </button>
        </>
      }
    >
      <p class="period">
        {view === "day"
          ? formatDay(noonOf(day))
          : `Semaine du ${formatDay(noonOf(mondayOf(day)))}`}{" "}
        <span class={live ? "live on" : "live"} role="status">
          {live ? "● à jour en direct" : "○ hors ligne"}
        </span>
      </p>
      <ErrorMessage error={error} />
      <section aria-labelledby="waiting-title" class="card waiting">
        <h2 id="waiting-title">Salle d’attente ({waiting.length})</h2>
        {waiting.length === 0 ? (
          <p class="hint">Personne n’attend.</p>
        ) : (
          <ul>
            {waiting.map((a) => (
              <li>
                {formatTime(a.time?.startTime)} — {displayName(patients.get(a.patient?.pseudonym ?? ""))}{" "}
                <StartButton appointment={a} />
              </li>
            ))}
          </ul>
        )}
      </section>
      {!appointments ? (
        <Loading />
      ) : view === "day" ? (
        <DayList appointments={appointments} patients={patients} />
      ) : (
        <div class="week">
          {daysShown("week", day).map((date) => (
            <section aria-label={formatDay(noonOf(date))}>
              <h2>{formatShortDay(noonOf(date))}</h2>
              <DayList
                appointments={appointments.filter((a) => parisDay(a.time!.startTime!) === date)}
                patients={patients}
              />
            </section>
          ))}
        </div>
      )}
    </Page>
  );
}

function DayList({ appointments, patients }: { appointments: Appointment[]; patients: ReturnType<typeof usePatients> }) {
  if (appointments.length === 0) return <p class="hint">Aucun rendez-vous.</p>;
  return (
    <ol class="agenda">
      {appointments.map((a) => {
        const id = a.patient?.pseudonym ?? "";
        return (
          <li class={`appointment status-${a.status}`}>
            <time dateTime={new Date(timestampMs(a.time!.startTime!)).toISOString()}>
              {formatTime(a.time?.startTime)}
            </time>
            <span class="who">
              <a href={`/medecin/patient/${encodeURIComponent(id)}`}>{displayName(patients.get(id))}</a>
              {a.reason && <span class="hint"> — {a.reason}</span>}
            </span>
            <span class="badge">{APPOINTMENT_STATUS[a.status]}</span>
            <StartButton appointment={a} />
          </li>
        );
      })}
    </ol>
  );
}

function StartButton({ appointment }: { appointment: Appointment }) {
  const startable = [AppointmentStatus.BOOKED, AppointmentStatus.ARRIVED, AppointmentStatus.IN_PROGRESS];
  if (!startable.includes(appointment.status)) return null;
  return (
    <button
      type="button"
      class="primary"
      onClick={() => navigate(`/medecin/consultation/${encodeURIComponent(appointment.appointmentId)}`)}
    >
      {appointment.status === AppointmentStatus.IN_PROGRESS ? "Rejoindre" : "Démarrer la téléconsultation"}
    </button>
  );
}
