// The organisation's monthly activity report (administrators): requests by state as requester
// and as expert, turnaround, overdue, and the billable acts; drawn as bars with the figures.

import { useState } from "preact/hooks";
import { client, currentIdentity } from "../api";
import { ExpertiseService, type ActivitySection } from "../gen/telehealth/v1/expertise_pb";
import { EXPERTISE_STATUS, TIME_ZONE, parisDay } from "../format";
import { ErrorMessage, Loading, useLoad } from "../ui";

function hours(seconds: bigint | undefined): string {
  if (seconds === undefined) return "—";
  return `${(Number(seconds) / 3600).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} h`;
}

export function OrganisationActivity() {
  const me = currentIdentity()!;
  const [month, setMonth] = useState(parisDay(new Date()).slice(0, 7));
  const report = useLoad(
    () => client(ExpertiseService).getActivityReport({ orgId: me.orgId, month, timeZone: TIME_ZONE }),
    [month],
  );
  const r = report.data?.report;
  return (
    <section class="card" aria-labelledby="activity-title">
      <h2 id="activity-title">Activité de télé-expertise du mois</h2>
      <label for="month">Mois</label>{" "}
      <input id="month" type="month" value={month} onInput={(e) => setMonth((e.target as HTMLInputElement).value)} />
      <ErrorMessage error={report.error} />
      {!r ? (
        <Loading />
      ) : (
        <>
          <Section title="Demandes reçues (expertise)" section={r.asExpert} />
          <Section title="Demandes envoyées" section={r.asRequester} />
          <h3>Actes</h3>
          <p>
            {r.acts.filter((a) => a.billable).length} acte(s) facturable(s),{" "}
            {r.acts.filter((a) => !a.billable).length} non facturable(s).
          </p>
        </>
      )}
    </section>
  );
}

function Section({ title, section }: { title: string; section: ActivitySection | undefined }) {
  if (!section) return null;
  const max = Math.max(1, ...section.countsByStatus.map((c) => c.count));
  return (
    <div>
      <h3>{title}</h3>
      <p>
        {section.submittedCount} demande(s), {section.answeredCount} répondue(s), {section.overdueCount} en retard ·
        délai médian {hours(section.medianTurnaround?.seconds)}, 90 % sous {hours(section.p90Turnaround?.seconds)}
      </p>
      <svg class="bars" viewBox={`0 0 400 ${section.countsByStatus.length * 28 + 4}`} role="img" aria-label={`${title} par état`}>
        {section.countsByStatus.map((c, i) => (
          <g>
            <text x="0" y={i * 28 + 18} class="axis">
              {EXPERTISE_STATUS[c.status]}
            </text>
            <rect x="130" y={i * 28 + 4} height="20" width={(c.count / max) * 230} class="bar" />
            <text x={136 + (c.count / max) * 230} y={i * 28 + 18} class="axis">
              {c.count}
            </text>
          </g>
        ))}
      </svg>
    </div>
  );
}
