// The specialist's own month: the requests they answered, day by day, with how many were late and
// the median time from submission to answer. (The organisation's report, with the billable acts,
// is the administrators'.)

import { useState } from "preact/hooks";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { client } from "../api";
import { ExpertiseService, ExpertiseStatus, type ExpertiseRequest } from "../gen/telehealth/v1/expertise_pb";
import { parisDay } from "../format";
import { ErrorMessage, Loading, Page, useLoad } from "../ui";

async function answeredByMe(): Promise<ExpertiseRequest[]> {
  const found: ExpertiseRequest[] = [];
  let pageToken = "";
  do {
    const page = await client(ExpertiseService).listInbox({
      statuses: [ExpertiseStatus.ANSWERED, ExpertiseStatus.CLOSED],
      claimedByMe: true,
      pageSize: 200,
      pageToken,
    });
    found.push(...page.requests);
    pageToken = page.nextPageToken;
  } while (pageToken && found.length < 2000);
  return found.filter((r) => r.answeredAt);
}

function hours(ms: number): string {
  return `${(ms / 3_600_000).toLocaleString("fr-FR", { maximumFractionDigits: 1 })} h`;
}

export function Activity() {
  const [month, setMonth] = useState(parisDay(new Date()).slice(0, 7));
  const answered = useLoad(answeredByMe, []);
  const inMonth = (answered.data ?? []).filter((r) => parisDay(r.answeredAt!).startsWith(month));
  const days = new Date(Number(month.slice(0, 4)), Number(month.slice(5, 7)), 0).getDate();
  const perDay = Array.from({ length: days }, (_, i) => {
    const day = `${month}-${String(i + 1).padStart(2, "0")}`;
    return inMonth.filter((r) => parisDay(r.answeredAt!) === day).length;
  });
  const max = Math.max(1, ...perDay);
  const turnarounds = inMonth
    .filter((r) => r.submittedAt)
    .map((r) => timestampMs(r.answeredAt!) - timestampMs(r.submittedAt!))
    .sort((a, b) => a - b);
  const median = turnarounds.length ? turnarounds[Math.floor((turnarounds.length - 1) / 2)]! : undefined;
  const late = inMonth.filter((r) => r.answeredLate).length;
  return (
    <Page title="Mon activité">
      <label for="month">Mois</label>{" "}
      <input id="month" type="month" value={month} onInput={(e) => setMonth((e.target as HTMLInputElement).value)} />
      <ErrorMessage error={answered.error} />
      {!answered.data ? (
        <Loading />
      ) : (
        <section class="card">
          <h2>Réponses du mois</h2>
          <p>
            {inMonth.length} demande(s) répondue(s), dont {late} en retard
            {median !== undefined && ` · délai médian ${hours(median)}`}
          </p>
          <svg class="bars" viewBox={`0 0 ${days * 14} 130`} role="img" aria-label="Réponses par jour du mois">
            {perDay.map((count, i) => (
              <g>
                <rect class="bar" x={i * 14 + 2} y={110 - (count / max) * 100} width="10" height={(count / max) * 100} />
                {(i === 0 || (i + 1) % 5 === 0) && (
                  <text class="axis" x={i * 14 + 7} y="126" text-anchor="middle">
                    {i + 1}
                  </text>
                )}
              </g>
            ))}
          </svg>
          <table class="list">
            <caption>Jours avec des réponses</caption>
            <thead>
              <tr>
                <th scope="col">Jour</th>
                <th scope="col">Réponses</th>
              </tr>
            </thead>
            <tbody>
              {perDay.map((count, i) =>
                count ? (
                  <tr>
                    <td>{i + 1}</td>
                    <td>{count}</td>
                  </tr>
                ) : null,
              )}
            </tbody>
          </table>
        </section>
      )}
    </Page>
  );
}
